"""What a run produced: statuses, step results and the run's outcome.

Plain classes (not dataclasses) on purpose: the no-op fast path builds these
without importing the engine or the model, and defining a dataclass costs
start-up time. Nothing here imports another lokfile module.
"""

from __future__ import annotations

import enum
import os
import time
from typing import Any


class Status(str, enum.Enum):
    """What happened to a step in a run."""

    RAN = "ran"  # executed and succeeded
    REUSED = "reused"  # fresh: the stored result was used
    FAILED = "failed"  # executed and failed (soft when continue_on_error)
    SKIPPED = "skipped"  # condition false, a dependency failed, or the run stopped first
    INTERRUPTED = "interrupted"
    STALE = "stale"  # a dry run or a plan: it would run (nothing ran)

    def __bool__(self) -> bool:
        return self in (Status.RAN, Status.REUSED)


class RunStatus(str, enum.Enum):
    """What happened to a run as a whole."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class StepResult:
    """The outcome of one step in one run."""

    def __init__(
        self,
        *,
        name: str,
        status: Status,
        reason: str,
        output: str = "",
        digest: str | None = None,
        error: str | None = None,
        backend: str | None = None,
        duration: float = 0.0,
        saved: float = 0.0,
        parsed: Any = None,
        units: list[Any] | None = None,
        filename: str = "",
    ) -> None:
        self.name = name
        self.status = status
        self.reason = reason
        self.output = output
        self.digest = digest
        self.error = error
        self.backend = backend
        self.duration = duration
        self.saved = saved
        self.parsed = parsed
        self.units: list[Any] = units if units is not None else []  # units.Unit, or UnitSummary
        self.filename = filename

    @property
    def success(self) -> bool:
        return self.status in (Status.RAN, Status.REUSED)

    def __repr__(self) -> str:
        return f"StepResult({self.name!r}, {self.status!r}, {self.reason!r})"


class UnitSummary:
    """A unit as a replayed run reports it (the fields `--json` shows)."""

    def __init__(
        self, *, name: str, digest: str | None, backend: str | None, output: str
    ) -> None:
        self.name = name
        self.status = Status.REUSED
        self.reason = "fresh"
        self.digest = digest
        self.backend = backend
        self.output = output
        self.error: str | None = None


class WorkflowSummary:
    """What reporting needs of a workflow: its name and step order."""

    def __init__(
        self,
        *,
        name: str,
        step_names: tuple[str, ...],
        description: str = "",
        path: str | None = None,
    ) -> None:
        self.name = name
        self.step_names = step_names
        self.description = description
        self.path = path


class RunOutcome:
    """One run: its status and every step's result."""

    def __init__(
        self,
        *,
        run_id: str,
        workflow: Any,  # model.Workflow or WorkflowSummary
        status: RunStatus,
        results: dict[str, StepResult],
        wall: float,
        saved: float,
        dry_run: bool = False,
        stopped_by: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.status = status
        self.results = results
        self.wall = wall
        self.saved = saved
        self.dry_run = dry_run
        self.stopped_by = stopped_by  # the signal that interrupted the run, if one did

    @property
    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in (Status.RAN, Status.REUSED, Status.FAILED, Status.SKIPPED)}
        for r in self.results.values():
            out[r.status.value] = out.get(r.status.value, 0) + 1
        return out

    @property
    def exit_code(self) -> int:
        if self.status is RunStatus.INTERRUPTED:
            return 130
        return 0 if self.status is RunStatus.SUCCEEDED else 1


def covered(spans: Any) -> float:
    """Seconds covered by the (start, end) spans together, overlaps counted once: the
    wall time of work done in parallel (two 10 s answers side by side took 10 s)."""
    total = 0.0
    reach = float("-inf")
    for start, end in sorted(spans):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


def new_run_id() -> str:
    """Sortable, unique: UTC time plus random hex."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + os.urandom(3).hex()
