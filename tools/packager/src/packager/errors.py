"""Exit codes, the errors that map onto them, and what became of each model (or step) a command ran."""

from collections.abc import Iterable
from enum import IntEnum, StrEnum


class ExitCode(IntEnum):
    """What a packager command's exit status means."""

    OK = 0
    MODEL_ERROR = 1  # the models or inputs are wrong; fix them
    USAGE_ERROR = 2  # the command line is wrong
    ENVIRONMENT_ERROR = 3  # a tool or service the command needs failed
    INTERNAL_ERROR = 70  # a bug in the packager (EX_SOFTWARE); PACKAGER_DEBUG=1 shows the traceback


# Least to most serious: what a command that ran several models exits with is the most serious of their
# codes. A bug outranks a tool or service failure (the other results cannot be trusted), which outranks a
# usage error (nothing the models hold is to blame), which outranks a model's own failure.
SEVERITY = (
    ExitCode.OK,
    ExitCode.MODEL_ERROR,
    ExitCode.USAGE_ERROR,
    ExitCode.ENVIRONMENT_ERROR,
    ExitCode.INTERNAL_ERROR,
)


def worst(codes: Iterable[ExitCode]) -> ExitCode:
    """The exit code of several results: the most serious of `codes` by SEVERITY (OK for none)."""
    return max(codes, key=SEVERITY.index, default=ExitCode.OK)


class Outcome(StrEnum):
    """What became of one model, or one step of it, in a run (its JSON and reports show the value)."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # not run: an earlier step failed


class PackagerError(Exception):
    """An expected failure, reported to the user as one message and an exit code."""

    exit_code = ExitCode.MODEL_ERROR


class UsageError(PackagerError):
    """The command was called wrongly (unknown model name, path without models, ...)."""

    exit_code = ExitCode.USAGE_ERROR


class EnvironmentFailure(PackagerError):
    """A tool, server or store the command needs is missing or failed."""

    exit_code = ExitCode.ENVIRONMENT_ERROR
