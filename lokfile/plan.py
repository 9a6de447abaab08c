"""Fresh or stale, and why — pure functions over key components.

A unit's key components (SPEC §4.1) are a JSON object; its key is their
digest. To explain a stale unit we compare its components with those of the
unit's last attempt; the first difference found names the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lokfile import hashing

# reasons, as shown to users
NEVER_RUN = "never run"
FORCED = "forced"
VOLATILE = "volatile: a shell step with no sources or outputs runs every time"
CACHE_OFF = "cache = false"
EXPIRED = "expired"
LAST_FAILED = "last attempt failed"
OUTPUT_MISSING = "output missing"
FRESH = "fresh"


@dataclass(frozen=True)
class Decision:
    fresh: bool
    reason: str


def make_key(components: dict[str, Any]) -> str:
    """The key of a unit: digest of its canonical components."""
    return hashing.digest_json(components)


def explain(
    components: dict[str, Any], previous: dict[str, Any] | None, previous_status: str | None
) -> str:
    """Why a unit whose key has no stored success is stale."""
    if previous is None:
        return NEVER_RUN
    if previous == components:
        return LAST_FAILED if previous_status not in (None, "ran", "reused") else NEVER_RUN
    for field, label in (
        ("command", "command changed"),
        ("prompt", "prompt changed"),
        ("system", "prompt changed"),
    ):
        if previous.get(field) != components.get(field):
            return label
    if previous.get("backend") != components.get("backend") or previous.get(
        "options"
    ) != components.get("options"):
        return "backend changed"
    old_up: dict[str, Any] = previous.get("upstream") or {}
    new_up: dict[str, Any] = components.get("upstream") or {}
    for name in sorted(set(old_up) | set(new_up)):
        if old_up.get(name) != new_up.get(name):
            return f"upstream {name} changed"
    old_src: dict[str, Any] = previous.get("sources") or {}
    new_src: dict[str, Any] = components.get("sources") or {}
    for path in sorted(set(old_src) | set(new_src)):
        if path not in old_src:
            return f"source added: {path}"
        if path not in new_src:
            return f"source removed: {path}"
        if old_src[path] != new_src[path]:
            return f"source changed: {path}"
    old_env: dict[str, Any] = previous.get("env") or {}
    new_env: dict[str, Any] = components.get("env") or {}
    for var in sorted(set(old_env) | set(new_env)):
        if old_env.get(var) != new_env.get(var):
            return f"env changed: {var}"
    if previous.get("item") != components.get("item") or previous.get("index") != components.get(
        "index"
    ):
        return "loop item changed"
    for field in sorted(set(previous) | set(components)):
        if previous.get(field) != components.get(field):
            return f"{field} changed"
    return NEVER_RUN


def changed_components(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    """Names of the top-level key components that differ (for `lok runs diff`)."""
    if a is None or b is None:
        return []
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
