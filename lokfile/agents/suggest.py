"""Routing a task to backends: keyword categories and per-type profiles (no I/O).

The original lok's task classifier, with its categories and scoring, plus a
profile of every built-in backend type (its strengths, in these categories, and
a one-line style, kept in the backend registry beside the type's other traits),
so an Ollama server, an OpenAI-compatible endpoint or a plain command can be
ranked too. Only the backends actually configured are ranked, each through its
type's profile.
"""

from __future__ import annotations

from dataclasses import dataclass

from lokfile.backends import registry
from lokfile.model import BackendConfig, Config

# category -> keywords, matched case-insensitively as substrings of the task
CATEGORIES: dict[str, tuple[str, ...]] = {
    "CodeAnalysis": (
        "n+1",
        "query",
        "queries",
        "sql",
        "code smell",
        "refactor",
        "pattern",
        "bug",
        "review",
    ),
    "SecurityAudit": ("security", "injection", "xss", "auth", "vulnerab", "audit", "secret"),
    "DeadCode": ("dead code", "unused", "remove", "cleanup", "clean up"),
    "Performance": ("performance", "slow", "optimi", "speed", "latency", "memory"),
    "Architecture": ("architecture", "design", "structure", "organi", "module"),
    "Writing": ("document", "docs", "readme", "explain", "summar", "write", "translat"),
    "Private": ("private", "offline", "confidential", "sensitive", "local only", "air-gap"),
    "Quick": ("quick", "simple", "short", "classify", "one word", "yes or no"),
}
GENERAL = registry.GENERAL

UNKNOWN_PROFILE: tuple[tuple[str, ...], str] = ((GENERAL,), "plugin backend")


def profile(type_name: str) -> tuple[tuple[str, ...], str]:
    """(ordered strengths, one-line style) of a backend type: the registry's, for a
    built-in type; a plugin type is a general-purpose "plugin backend"."""
    found = registry.get(type_name)
    if found is None:
        return UNKNOWN_PROFILE
    return found.strengths, found.style


@dataclass(frozen=True)
class Ranked:
    """One backend's place in a ranking."""

    name: str
    type: str
    score: int
    style: str
    matched: tuple[str, ...]  # the task's categories this backend is strong in


def classify(task: str) -> list[str]:
    """The task's categories in table order; `General` when no keyword matches."""
    text = task.lower()
    found = [cat for cat, words in CATEGORIES.items() if any(w in text for w in words)]
    return found or [GENERAL]


def score(strengths: tuple[str, ...], categories: list[str]) -> int:
    """Sum over the task's categories of 10 minus the category's place in the strengths."""
    return sum(10 - min(strengths.index(c), 9) for c in categories if c in strengths)


def rank(task: str, backends: list[BackendConfig]) -> tuple[list[str], list[Ranked]]:
    """(categories, backends that score above zero, best first; ties by name)."""
    categories = classify(task)
    out = []
    for cfg in backends:
        strengths, style = profile(cfg.type)
        points = score(strengths, categories)
        if points == 0 and GENERAL not in categories:
            # every backend can attempt anything: a weak General match keeps it listed
            points = score(strengths, [GENERAL]) // 5
        if points > 0:
            matched = tuple(c for c in categories if c in strengths)
            out.append(Ranked(cfg.name, cfg.type, points, style, matched))
    out.sort(key=lambda r: (-r.score, r.name))
    return categories, out


def enabled_backends(config: Config, names: list[str] | None = None) -> list[BackendConfig]:
    """The enabled configured backends (only `names`, in that order, when given)."""
    if names is not None:
        return [config.backends[n] for n in names if n in config.backends]
    return [b for b in config.backends.values() if b.enabled]
