"""The error family and the one handler that maps errors to exit codes.

Every failure a user can cause or fix is a `GatewayctlError`: it carries one clear message and,
where there is one, a hint saying what to do. Anything else reaching the handler is a bug.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from typing import TypeVar

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_BUG = 3
EXIT_INTERRUPTED = 130


class GatewayctlError(Exception):
    """A failure the user can act on: printed as one message plus an optional hint."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(GatewayctlError):
    """Bad command-line input (an option value, a missing file)."""


class ValidationFailed(GatewayctlError):
    """The manifests have errors; the diagnostics were already printed."""


T = TypeVar("T")


def run_guarded(func: Callable[[], int], *, debug: bool = False) -> int:
    """Run a command body, turning every error into a message and an exit code."""
    try:
        return func()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except GatewayctlError as err:
        if debug:
            traceback.print_exc()
        if isinstance(err, ValidationFailed):
            # Already formatted diagnostics, each with its own severity and hint.
            print(err.message, file=sys.stderr, end="" if err.message.endswith("\n") else "\n")
            return EXIT_ERROR
        print(f"error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"  hint: {err.hint}", file=sys.stderr)
        return EXIT_ERROR
    except Exception:  # noqa: BLE001 - the last line of defence
        if debug:
            traceback.print_exc()
            return EXIT_BUG
        fd, path = tempfile.mkstemp(prefix="gatewayctl-crash-", suffix=".log")
        with os.fdopen(fd, "w") as log:
            traceback.print_exc(file=log)
        print(
            f"error: gatewayctl hit an internal error; the traceback is in {path}",
            file=sys.stderr,
        )
        print("  hint: run again with --debug, and report it with that log", file=sys.stderr)
        return EXIT_BUG
