"""Outcome statuses: tiny, so the no-op fast path can use them without the model."""

from __future__ import annotations

import enum


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
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
