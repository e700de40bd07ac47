"""InvokeEndpoint's limits as SageMaker states them, and what makes a TargetModel a key in the store.

SageMaker Runtime's service model (botocore's `sagemaker-runtime/2017-05-13/service-2.json`, the API
reference's https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html):
- `Body` (BodyBlob) is at most 6291456 bytes (6 MB). Over it the service answers HTTP 413 with no modeled
  error type and the message "HTTP content length exceeded N bytes." (boto3 raises ClientError, code
  "413"; https://github.com/aws/sagemaker-python-sdk/issues/171 shows it from when the limit was 5 MB).
- `TargetModel` (TargetModelHeader) is 1 to 1024 characters matching `\\A\\S[\\p{Print}]*\\z`: Java's
  \\p{Print} is printable ASCII (space to tilde); the first character is not a space.

A TargetModel is also a key relative to the store, never a path: no leading `/`, no backslash, no empty,
`.` or `..` segment between the `/`s. A key refused here is refused for what it is, so the answer never
says whether anything exists where it would have led.
"""

from __future__ import annotations

import re

from packager.endpoint.errors import TargetInvalid

MAX_BODY = 6 * 1024 * 1024
MAX_TARGET = 1024
PRINTABLE = re.compile(r"[!-~][ -~]*")
SHOWN = 80  # characters of a refused TargetModel (or header) repeated in the answer


def check_target(target: str | None) -> str:
    """`target` when it is a TargetModel SageMaker accepts and a key inside the store; else TargetInvalid
    saying which rule it breaks."""
    if not target:
        raise TargetInvalid("a multi-model endpoint needs a TargetModel (X-Amzn-SageMaker-Target-Model)")
    if len(target) > MAX_TARGET:
        raise TargetInvalid(
            f"TargetModel {shown(target)} is {len(target)} characters long; SageMaker allows at most "
            f"{MAX_TARGET}"
        )
    if PRINTABLE.fullmatch(target) is None:
        raise TargetInvalid(
            f"TargetModel {shown(target)} has a character outside printable ASCII (SageMaker's "
            r"pattern \A\S[\p{Print}]*\z)"
        )
    if target.startswith("/"):
        raise not_a_key(target, "it is an absolute path")
    if "\\" in target:
        raise not_a_key(target, "it has a backslash")
    if any(segment in ("", ".", "..") for segment in target.split("/")):
        raise not_a_key(target, "it has an empty, '.' or '..' segment")
    return target


def not_a_key(target: str, why: str) -> TargetInvalid:
    """The refusal of a TargetModel that names no key inside the store."""
    return TargetInvalid(
        f"TargetModel {shown(target)} is not a key in the store: {why}; name a key under the store URI, "
        "as churn_1.tar.gz or <branch>/<commit12>/churn_1.tar.gz"
    )


def shown(text: str) -> str:
    """Part of a request (a TargetModel, a header) as an answer repeats it: quoted, escaped, cut short."""
    return repr(text[:SHOWN] + ("..." if len(text) > SHOWN else ""))
