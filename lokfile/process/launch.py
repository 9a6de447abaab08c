"""How a shell command starts: `sh -c TEXT`, or `sh FILE` when TEXT is too large.

Linux caps one argument at 128 KiB (MAX_ARG_STRLEN) and argv plus the
environment together at ARG_MAX, so a step whose rendered command carries a
large value would fail with "Argument list too long". Past `ARG_LIMIT` bytes
the command is written to a private file, which the shell sources:

    small:                 sh -c 'COMMAND'
    large:                 sh -c '. /project/.lok/tmp/cmd-XXXX.sh'     (the file holds COMMAND)
    large, with wrapper:   sh -c "nix-shell --run '. /project/.lok/tmp/cmd-XXXX.sh'"

Sourcing keeps what `-c` gives: the same shell (the one the wrapper starts, bash
for `bash -c '{cmd}'`), the same `$0`, `exit` ending it. The file lives under
the project's `.lok/tmp/` by absolute path, so a wrapper that enters a container
mounting the project at the same path still finds it. It is removed when the
command ends (`Launch.done`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

ARG_LIMIT = 64 * 1024  # well under 128 KiB, leaving room for the environment and the wrapper
SHOWN = 400  # characters of a command quoted in an error message


@dataclass(frozen=True)
class Launch:
    """The argv that runs a command, and the script file to remove afterwards."""

    argv: list[str]
    script: str | None = None

    def done(self) -> None:
        if self.script is not None:
            try:
                os.unlink(self.script)
            except FileNotFoundError:
                pass


def launch(command: str, wrapper: str | None, scratch: Path) -> Launch:
    """How to run `command` with sh (inside `wrapper`); large commands go through a file
    under `scratch`. ValueError when the command holds a NUL byte (no argv or script can)."""
    if "\0" in command:
        raise ValueError(
            f"the command holds a NUL byte (at offset {command.index(chr(0))}), "
            "which no shell command can carry"
        )
    from lokfile.templates.shellquote import wrap_command

    final = wrap_command(wrapper, command) if wrapper else command
    if len(final) * 4 <= ARG_LIMIT or len(final.encode()) <= ARG_LIMIT:
        return Launch(["sh", "-c", final])
    scratch.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="cmd-", suffix=".sh", dir=scratch)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(command)
    except BaseException:
        os.unlink(path)
        raise
    from lokfile.templates.shellquote import BARE_PLACE, quote

    source = ". " + quote(os.path.abspath(path), BARE_PLACE)
    return Launch(["sh", "-c", wrap_command(wrapper, source) if wrapper else source], path)


def shown(command: str) -> str:
    """`command` short enough for an error message."""
    if len(command) <= SHOWN:
        return command
    return f"{command[:SHOWN]}… ({len(command)} characters)"
