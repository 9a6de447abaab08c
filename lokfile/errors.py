"""lok's errors: one root, each with a message, a hint and an exit code.

    LokError                  anything lok reports to a user (exit 2 unless said otherwise)
    ├── UsageError            bad command-line input
    ├── ConfigError           lok.toml could not be read or is invalid
    ├── WorkflowError         a workflow file could not be loaded; carries every Problem found
    ├── TemplateError         a template does not compile or does not render
    ├── StoreError            .lok/ is unreadable or corrupt (exit 1)
    │   └── DiskFullError     the disk is full: what could not be written, and where
    └── Interrupted           the user pressed Ctrl-C (exit 130)

Step failures are *not* exceptions: they are outcomes recorded in the run.
Backend failures are `lokfile.backends.base.BackendError`, converted into step
outcomes by the executor.
"""

from __future__ import annotations

import errno
from typing import NamedTuple

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

VALIDATE_HINT = "`lok workflow validate` checks a file without running it"


class Problem(NamedTuple):
    """One thing wrong with an input file, located as precisely as we can. (A NamedTuple,
    not a dataclass: the no-op fast path imports this module, and `dataclasses` costs it
    ~10 ms of imports.)"""

    message: str
    file: str | None = None
    line: int | None = None
    hint: str | None = None

    def where(self) -> str:
        """`file:line`, `file` or '' — the prefix of a one-line report."""
        if self.file and self.line:
            return f"{self.file}:{self.line}"
        return self.file or ""

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.message}" if where else self.message


class LokError(Exception):
    """Root of every error lok reports; printed as `Error: …` / `Hint: …`."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        """The report a user sees, without the `Error:`/`Hint:` labels' colours."""
        out = [f"Error: {self.message}"]
        if self.hint:
            out.append(f"Hint: {self.hint}")
        return out


class UsageError(LokError):
    """The command line asked for something impossible."""


class ConfigError(LokError):
    """A config file is unreadable or invalid."""


class TemplateError(LokError):
    """A template does not compile, or names something that does not exist."""


class WorkflowError(LokError):
    """A workflow file is invalid; `problems` holds every problem found at once."""

    def __init__(self, problems: list[Problem]) -> None:
        assert problems, "a WorkflowError needs at least one problem"
        self.problems = problems
        first = problems[0]
        if len(problems) == 1:
            super().__init__(str(first), first.hint or VALIDATE_HINT)
        else:
            files = sorted({p.file for p in problems if p.file})
            label = files[0] if len(files) == 1 else "workflow"
            super().__init__(
                f"{label}: {len(problems)} problems",
                f"fix them all; {VALIDATE_HINT}",
            )

    def lines(self) -> list[str]:
        out = [f"Error: {self.message}"]
        if len(self.problems) > 1:
            for p in self.problems:
                out.append(f"  {p}" + (f" ({p.hint})" if p.hint else ""))
        if self.hint:
            out.append(f"Hint: {self.hint}")
        return out


class StoreError(LokError):
    """The store or run history is unreadable."""

    exit_code = EXIT_FAILED


class DiskFullError(StoreError):
    """Something could not be written because the file system is full (or over quota).

    Nothing already stored is lost: artifacts are renamed into place only once
    written whole, and SQLite rolls back a transaction it cannot commit.
    """

    def __init__(self, message: str, where: str) -> None:
        super().__init__(
            message,
            f"free some space on the file system that holds {where}, then run again: "
            "what finished before is kept",
        )
        self.where = where


FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})  # no room left, or over quota


def disk_full(exc: BaseException, what: str, where: object) -> DiskFullError | None:
    """The DiskFullError for an OSError that means the disk is full (else None)."""
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return DiskFullError(f"the disk is full: could not write {what} in {where}", str(where))
    return None


class Interrupted(LokError):
    """Ctrl-C: the run was recorded as interrupted."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str = "interrupted", hint: str | None = None) -> None:
        super().__init__(message, hint or "`lok run --resume` continues where it stopped")


class Terminated(KeyboardInterrupt):
    """SIGTERM, outside a run: handled exactly like Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def sigterm_is_ctrl_c() -> None:
    """SIGTERM stops lok as the first Ctrl-C does (a run installs its own handler for both)."""
    import signal

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def interrupted(exc: BaseException | None) -> str:
    """The line lok prints when Ctrl-C or SIGTERM stopped a command."""
    return "Interrupted by SIGTERM." if isinstance(exc, Terminated) else "Interrupted."
