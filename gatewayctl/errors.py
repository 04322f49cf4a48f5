"""The error family, the exit-code table, and the one handler that maps errors to codes.

Every failure a user can cause or fix is a `GatewayctlError`: it carries one clear message and,
where there is one, a hint saying what to do. Anything else reaching the handler is a bug: the
traceback goes to a crash log and the exit code is EXIT_BUG.

One table for every command (SPEC §7, docs/plan-and-apply.md "Exit codes"):

    0    success
    1    error, usage errors included (a bad option, a missing argument)
    2    a result to act on: there are changes (`plan --detailed-exitcode`); the canary failed
         or was aborted (`rollout analyze|advance`)
    3    analysis inconclusive (`rollout analyze`)
    70   internal error: a bug in gatewayctl (EX_SOFTWARE); a crash log is written
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_CANARY_FAILED = 2
EXIT_INCONCLUSIVE = 3
EXIT_BUG = 70
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
    """The manifests have errors: the message is their formatted diagnostics, each line with
    its own severity and hint, printed as it is (no `error:` prefix, no extra hint)."""


def handle_error(exc: BaseException, *, debug: bool = False) -> int:
    """Print `exc` as users should see it and return its exit code (the one handler,
    called by `gatewayctl.cli.main`)."""
    if isinstance(exc, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if isinstance(exc, GatewayctlError):
        if debug:
            traceback.print_exception(exc)
        if isinstance(exc, ValidationFailed):
            # Already formatted diagnostics, each with its own severity and hint.
            print(exc.message, file=sys.stderr, end="" if exc.message.endswith("\n") else "\n")
            return EXIT_ERROR
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return EXIT_ERROR
    if debug:
        traceback.print_exception(exc)
        return EXIT_BUG
    fd, path = tempfile.mkstemp(prefix="gatewayctl-crash-", suffix=".log")
    with os.fdopen(fd, "w") as log:
        traceback.print_exception(exc, file=log)
    print(f"error: gatewayctl hit an internal error; the traceback is in {path}",
          file=sys.stderr)
    print("  hint: run again with --debug, and report it with that log", file=sys.stderr)
    return EXIT_BUG
