"""Exit codes and the errors that map onto them."""

from enum import IntEnum


class ExitCode(IntEnum):
    """What a packager command's exit status means."""

    OK = 0
    MODEL_ERROR = 1  # the models or inputs are wrong; fix them
    USAGE_ERROR = 2  # the command line is wrong
    ENVIRONMENT_ERROR = 3  # a tool or service the command needs failed
    INTERNAL_ERROR = 70  # a bug in the packager (EX_SOFTWARE); PACKAGER_DEBUG=1 shows the traceback


class PackagerError(Exception):
    """An expected failure, reported to the user as one message and an exit code."""

    exit_code = ExitCode.MODEL_ERROR


class UsageError(PackagerError):
    """The command was called wrongly (unknown model name, path without models, ...)."""

    exit_code = ExitCode.USAGE_ERROR


class EnvironmentFailure(PackagerError):
    """A tool, server or store the command needs is missing or failed."""

    exit_code = ExitCode.ENVIRONMENT_ERROR
