"""The run document, `.lok/runs/<id>/run.json`: one function, for every writer.

The coordinator writes it when a run starts (`running`, no steps yet) and
when it ends; the no-op fast path (lokfile/engine/snapshot.py) writes it for
a replayed run. Both go through `run_document`, so the file has one shape.
Light on purpose: the fast path imports it without the rest of the engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lokfile.outcome import RunStatus, StepResult


def run_document(
    *,
    run_id: str,
    workflow: str,
    path: str | None,
    args: dict[str, Any],
    status: RunStatus,
    started: float,
    ended: float | None,
    resumed_from: str | None,
    steps: Iterable[StepResult],
    cost: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """run.json of one run: what ran with which arguments, each settled step, and what
    its calls cost (`cost`, lokfile.outcome.cost_summary)."""
    return {
        "id": run_id,
        "workflow": workflow,
        "path": path,
        "args": args,
        "status": status.value,
        "started": started,
        "ended": ended,
        "resumed_from": resumed_from,
        "cost": cost,
        "steps": [
            {
                "name": r.name,
                "status": r.status.value,
                "reason": r.reason,
                "digest": r.digest,
                "file": r.filename or None,
                "duration": round(r.duration, 4),
                "backend": r.backend,
                "error": r.error,
                "usage": r.usage.doc(),
                **({"truncated": True} if r.truncated else {}),
            }
            for r in steps
        ],
    }
