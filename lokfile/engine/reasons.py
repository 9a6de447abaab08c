"""Fresh or stale, and why — pure functions over key components.

A unit's key components (everything that determines its result) are a JSON object; its key is their
digest. To explain a stale unit we compare its components with those of the
unit's last attempt; the first difference found names the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lokfile import hashing
from lokfile.outcome import Status

if TYPE_CHECKING:
    from lokfile.engine.units import Unit

# reasons, as shown to users
NEVER_RUN = "never run"
FORCED = "forced"
VOLATILE = "volatile: a shell step with no sources or outputs runs every time"
CACHE_OFF = "cache = false"
EXPIRED = "expired"
LAST_FAILED = "last attempt failed"
OUTPUT_MISSING = "output missing"
FRESH = "fresh"
RESUMED = "succeeded in the resumed run"


def edited_file_changed(path: str) -> str:
    """An edit step whose touched file is neither as it left it nor as it found it."""
    return f"edited file changed: {path}"


def reapply(count: int, done: bool) -> str:
    """An edit step whose files lost its edits (all back as it found them): in a plan,
    what will happen; once it ran, what happened."""
    edits = f"{count} stored edit{'' if count == 1 else 's'}"
    return f"re-applied {edits}" if done else f"edits reverted: re-apply {edits}"


def make_key(components: dict[str, Any]) -> tuple[str, str]:
    """(key, canonical JSON text) of a unit's components; the key is the text's digest."""
    data = hashing.canonical_json(components)
    return hashing.digest_bytes(data), data.decode()


def explain(
    components: dict[str, Any], previous: dict[str, Any] | None, previous_status: str | None
) -> str:
    """Why a unit whose key has no stored success is stale.

    Inputs are checked before the rendered text, because a changed upstream
    output or source usually changes the rendered prompt too, and the input
    is the cause worth naming.
    """
    if previous is None:
        return NEVER_RUN
    if previous == components:
        failed = previous_status is not None and not Status(previous_status)
        return LAST_FAILED if failed else NEVER_RUN
    for label, old, new in (
        ("upstream {} changed", previous.get("upstream"), components.get("upstream")),
        ("upstream {} changed", previous.get("upstream_files"), components.get("upstream_files")),
        ("source changed: {}", previous.get("sources"), components.get("sources")),
        ("env changed: {}", previous.get("env"), components.get("env")),
    ):
        old, new = old or {}, new or {}
        for name in sorted(set(old) | set(new)):
            if name not in old and "source" in label:
                return f"source added: {name}"
            if name not in new and "source" in label:
                return f"source removed: {name}"
            if old.get(name) != new.get(name):
                return label.format(name)
    if previous.get("item") != components.get("item"):
        return "loop item changed"
    for field, label in (
        ("command", "command changed"),
        ("prompt", "prompt changed"),
        ("system", "prompt changed"),
        ("backend", "backend changed"),
        ("options", "backend changed"),
    ):
        if previous.get(field) != components.get(field):
            return label
    for field in sorted(set(previous) | set(components)):
        if previous.get(field) != components.get(field):
            return f"{field} changed"
    return NEVER_RUN


def reused_reason(units: Sequence[Unit]) -> str:
    """Why a step whose every unit was reused is: `fresh`, or what a unit said instead
    (a resumed run's success)."""
    return next((u.reason for u in units if u.reason and u.reason != FRESH), FRESH)


def part_reason(units: Sequence[Unit], runs: Callable[[Unit], bool]) -> str:
    """Why a step runs, when only some of its items or backends do: `1 new item of 3`,
    `2 of 3 items: loop item changed`, `1 new backend of 3`. Otherwise the first running
    unit's own reason; '' when none runs."""
    running = [u for u in units if runs(u)]
    if not running:
        return ""
    parts = [u for u in units if u.name.partition(":")[0] in ("item", "backend")]
    moving = [u for u in parts if runs(u)]
    if not moving or len(moving) == len(parts):
        return running[0].reason
    noun = parts[0].name.partition(":")[0]
    k = len(moving)
    if all(u.reason == NEVER_RUN for u in moving):
        return f"{k} new {noun}{'s' if k > 1 else ''} of {len(parts)}"
    return f"{k} of {len(parts)} {noun}s: {moving[0].reason}"


def step_verdict(units: Sequence[Unit], success: bool) -> tuple[Status, str]:
    """A step's status and reason from its settled units: stale (a dry run), skipped
    (the budget held a unit back), failed, ran (any unit ran) or reused."""
    if any(u.status is Status.STALE for u in units):
        return Status.STALE, part_reason(units, lambda u: u.status is Status.STALE)
    if not success and (held := [u for u in units if u.status is Status.SKIPPED]):
        return Status.SKIPPED, held[0].reason
    if not success:
        return Status.FAILED, next(
            (u.reason for u in units if u.status is Status.FAILED), "failed"
        )
    if any(u.status is Status.RAN or u.status is Status.FAILED for u in units):
        running = part_reason(units, lambda u: u.status is Status.RAN)
        return Status.RAN, running or reused_reason(units)
    return Status.REUSED, reused_reason(units)
