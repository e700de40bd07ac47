"""The errors an endpoint answers, each as SageMaker's InvokeEndpoint does: its error type (the name
botocore's rest-json parser maps to a modeled exception) and HTTP status."""

from __future__ import annotations

from typing import Any

from packager.errors import EnvironmentFailure, PackagerError


class EndpointError(PackagerError):
    """A request the endpoint refuses; `error_type` and `status` are what the service answers (no type:
    the service names none, and botocore takes the status as the error's code)."""

    error_type: str | None = "InternalFailure"
    status = 500

    def fields(self) -> dict[str, Any]:
        """The error's modeled members besides its message (as the JSON error body carries them)."""
        return {}


class TargetInvalid(EndpointError):
    """No target model named, none such in the store, or one that does not verify or cannot be served."""

    error_type = "ValidationError"
    status = 400


class RequestInvalid(EndpointError):
    """A request that is not HTTP the endpoint can read: its status says what is wrong (400, 408, 411,
    414, 431), its type is the service's ValidationError."""

    error_type = "ValidationError"

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class PayloadTooLarge(EndpointError):
    """A body over the service's limit, refused as the service refuses it: 413, no error type."""

    error_type = None
    status = 413


class UnknownOperation(EndpointError):
    """A method and path that are not InvokeEndpoint's."""

    error_type = "UnknownOperationException"
    status = 404


class ModelNotReady(EndpointError):
    """The target is still being downloaded or loaded past the deadline; the load goes on."""

    error_type = "ModelNotReadyException"
    status = 429


class ModelError(EndpointError):
    """Triton answered the request with an error (or a load failed); its status and message are kept."""

    error_type = "ModelError"
    status = 424

    def __init__(self, message: str, original_status: int, original_message: str) -> None:
        super().__init__(message)
        self.original_status = original_status
        self.original_message = original_message

    def fields(self) -> dict[str, Any]:
        return {"OriginalStatusCode": self.original_status, "OriginalMessage": self.original_message}


class StoreUnavailable(EndpointError, EnvironmentFailure):
    """The store could not be read (an InternalFailure, as the service answers one)."""
