"""What happens during a run, as data (immutable tuples). Reporters turn these into text.

The engine tells a `Reporter` two things: each event as it happens, and a
`tick` while it waits for jobs (at most every 0.1 s), so a live view can
redraw elapsed times without an event to hang it on.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from lokfile.outcome import RunStatus, Status


class RunStarted(NamedTuple):
    run_id: str
    workflow: str
    description: str
    steps: int
    dry_run: bool = False
    jobs: int = 0  # how many jobs may run at once (-j, the workflow's concurrency); 0: unknown


class ParallelStart(NamedTuple):
    size: int  # how many steps started together
    limit: int = 0  # how many of their jobs can really run at once (-j, backend concurrency)


class UnitStarted(NamedTuple):
    step: str
    unit: str
    reason: str
    backend: str | None = None


class StepNote(NamedTuple):
    step: str
    unit: str
    text: str


class StepFinished(NamedTuple):
    step: str
    status: Status  # STALE in a dry run
    reason: str
    duration: float
    backend: str | None = None
    error: str | None = None
    units: int = 1
    # a multi-backend step's own times, each backend's (and the synthesis's): (label, seconds)
    parts: tuple[tuple[str, float], ...] = ()
    truncated: bool = False  # an answer was cut at the token limit (max_tokens)


class Notice(NamedTuple):
    """Something a person should know once, not about a step (`.lok/` was created here)."""

    text: str


class RunFinished(NamedTuple):
    run_id: str
    status: RunStatus
    counts: dict[str, int]
    wall: float
    saved: float
    extra: dict[str, Any] | None = None
    dry_run: bool = False  # counts then hold Status.STALE (would run) and REUSED (fresh)
    cost: dict[str, Any] | None = None  # the run's `cost` (lokfile.outcome.cost_summary)


Event = (
    RunStarted | ParallelStart | UnitStarted | StepNote | StepFinished | Notice | RunFinished
)


class Reporter(Protocol):
    """What the engine calls while a run goes on (lokfile/reporters.py has the real ones)."""

    def __call__(self, event: Event, /) -> None:
        """Something happened."""
        ...

    def tick(self) -> None:
        """Nothing happened yet: the coordinator is waiting for jobs."""
        ...
