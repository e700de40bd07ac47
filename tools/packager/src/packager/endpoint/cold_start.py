"""An artifact's cold start as a multi-model endpoint pays it: fetched from a store, verified, extracted,
loaded and asked its first request, through the emulator (a fresh server, with the artifact's directory as
a file store), timed against a budget; and its failure at a step, saying what it found (as push reports it
in `checked`). What the budget makes of it is the pipeline's (`packager.pipeline.cold_start`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packager.endpoint.emulator import WORDS, ColdStart, Settings, emulating
from packager.endpoint.errors import EndpointError, ModelNotReady
from packager.errors import ExitCode, PackagerError
from packager.modeldir import Tensor
from packager.release.stores.file import FileStore
from packager.triton import LOAD_TIMEOUT, Launcher


class ColdStartFailed(PackagerError):
    """An artifact's cold start failed at one of its steps (`found["cold_start"]` names it, and why)."""

    def __init__(self, message: str, found: dict[str, object], exit_code: ExitCode) -> None:
        super().__init__(message)
        self.found = found
        self.exit_code = exit_code


@dataclass(frozen=True)
class ColdStartCheck:
    """A measured cold start and what the budget made of it."""

    cold_start: ColdStart
    budget: float
    streamed: bool = False  # the first inference went over gRPC streaming (a decoupled top model)

    @property
    def seconds(self) -> float:
        return self.cold_start.seconds

    @property
    def over(self) -> bool:
        return self.seconds > self.budget

    def line(self) -> str:
        verdict = (
            f"over the {self.budget:g} s budget" if self.over else f"within the {self.budget:g} s budget"
        )
        streamed = " (over gRPC streaming: InvokeEndpoint refuses a decoupled model)" if self.streamed else ""
        return f"{self.cold_start.line()}{streamed}; {self.seconds:.2f} s in all, {verdict}"

    def to_json(self) -> dict[str, object]:
        return {
            **self.cold_start.to_json(),
            "first_inference_over": "grpc_stream" if self.streamed else "invoke_endpoint",
            "seconds": round(self.seconds, 3),
            "budget": self.budget,
        }


def measure_cold_start(
    archive: Path,
    body: bytes,
    *,
    content_type: str,
    launcher: Launcher,
    log_path: Path,
    budget: float,
    public_key: Path | None = None,
    load_timeout: float = LOAD_TIMEOUT,
    stream: Sequence[Tensor] | None = None,
) -> ColdStartCheck:
    """Serve `archive` through the emulator from the directory it lies in, send it `body` (its first case;
    `stream`: that case's inputs, over gRPC streaming, for a decoupled top model, which InvokeEndpoint
    refuses), and time each step of that first request against `budget` seconds; ColdStartFailed, naming
    the step, when one fails."""
    directory = archive.parent.absolute()
    store = FileStore(f"file://{directory}", directory)
    settings = Settings(public_key=public_key, not_ready_after=load_timeout, load_timeout=load_timeout)
    try:
        with emulating(store, launcher, log_path=log_path, settings=settings) as emulator:
            try:
                emulator.invoke(archive.name, body, content_type=content_type, stream=stream)
            except EndpointError as error:
                raise _failed(archive.name, emulator.cold_starts, error, log_path, budget) from None
            (cold,) = emulator.cold_starts
    finally:
        store.close()
    return ColdStartCheck(cold, budget, stream is not None)


def _failed(
    target: str, recorded: list[ColdStart], error: EndpointError, log_path: Path, budget: float
) -> ColdStartFailed:
    """The check's refusal of a cold start that failed: at the step its record names; with none recorded,
    at the download, or at the load when it was still loading past the deadline."""
    cold = recorded[0] if recorded else ColdStart(target)
    if cold.failed is None:
        cold.fail("load" if isinstance(error, ModelNotReady) else "download", error)
    step = str(cold.failed)
    status = f" (status {cold.first_inference_status})" if step == "first_inference" else ""
    return ColdStartFailed(
        f"cold-start check: {target} failed at {WORDS.get(step, step)}{status}: {cold.error} "
        f"(server log: {log_path})",
        {"cold_start": ColdStartCheck(cold, budget).to_json(), "over_budget": None, "log": str(log_path)},
        error.exit_code,  # a store that could not be read is the environment's failure
    )
