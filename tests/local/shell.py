"""What a shell makes of a printed command: its argv after quoting and `$(...)` substitution."""

from __future__ import annotations

import subprocess


def shell_argv(command: str) -> list[str]:
    """The argv bash would run for `command` (its first word replaced by printf, so that the
    arguments are printed, NUL-separated, instead of run)."""
    program, _, rest = command.partition(" ")
    done = subprocess.run(["bash", "-c", f"printf '%s\\0' {program} {rest}"],
                          capture_output=True, check=True, timeout=10)
    return done.stdout.decode().split("\0")[:-1]
