"""What happens during a run, as data. Reporters turn these into text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    workflow: str
    description: str
    steps: int
    dry_run: bool = False


@dataclass(frozen=True)
class ParallelStart:
    count: int


@dataclass(frozen=True)
class UnitStarted:
    step: str
    unit: str
    reason: str
    backend: str | None = None


@dataclass(frozen=True)
class StepNote:
    step: str
    unit: str
    text: str


@dataclass(frozen=True)
class StepFinished:
    step: str
    status: str  # model.Status value, or "stale" in a dry run
    reason: str
    duration: float
    backend: str | None = None
    error: str | None = None
    units: int = 1


@dataclass(frozen=True)
class RunFinished:
    run_id: str
    status: str
    counts: dict[str, int]
    wall: float
    saved: float
    extra: dict[str, Any] = field(default_factory=dict)


Event = RunStarted | ParallelStart | UnitStarted | StepNote | StepFinished | RunFinished
