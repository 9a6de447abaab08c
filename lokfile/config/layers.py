"""The layers of settings, merged key by key, remembering where each value came from.

    built-in defaults  <  user (~/.config/lok/lok.toml)  <  project lok.toml  <  --config

Layers merge table by table and key by key: a project `[backends.ollama]`
that only sets `model` keeps the default `command`. Arrays replace. The bottom
layer, `BUILTIN`, is the original tool's defaults. Reading the files is
`config.load`'s job, checking the merged result `config.check`'s.
"""

from __future__ import annotations

from typing import Any

from lokfile import tomlfile
from lokfile.backends import registry
from lokfile.errors import Problem

Key = tuple[str | int, ...]

BUILTIN_LABEL = "built-in"


def _ask(what: str) -> str:
    return f"List at most 5 {what}, each with file:line and one concise sentence."


# The original lok's defaults: the bottom layer of every config. A
# literal rather than TOML text, so a project without lok.toml never imports tomllib.
BUILTIN: dict[str, Any] = {
    "defaults": {"parallel": True, "timeout": 300, "jobs": 8},
    "cache": {"enabled": True, "ttl_hours": 24, "salt": ""},
    "conductor": {"max_rounds": 5, "max_tokens": 4096},
    "consensus": {"weights": registry.default_weights()},
    "backends": {
        "codex": {"command": "codex", "args": ["exec", "--json", "-s", "read-only"]},
        "gemini": {
            "command": "npx",
            "args": ["@google/gemini-cli"],
            "skip_lines": 1,
            "timeout": 600,
        },
        "claude": {"command": "claude"},
        "ollama": {"url": "http://localhost:11434", "model": "llama3.2"},
        "local": {"type": "local"},
    },
    "tasks": {
        "hunt": {
            "description": "Find bugs, performance problems and dead code",
            "backends": ["codex"],
            "prompts": [
                {
                    "name": "errors",
                    "prompt": _ask(
                        "real bugs in this codebase (unhandled errors, crashes, wrong edge cases)"
                    ),
                },
                {
                    "name": "perf",
                    "prompt": _ask(
                        "performance problems in this codebase (needless work, N+1 queries, "
                        "quadratic loops)"
                    ),
                },
                {
                    "name": "dead-code",
                    "prompt": _ask(
                        "pieces of dead code in this codebase (unused functions, unreachable "
                        "branches, stale modules)"
                    ),
                },
            ],
        },
        "audit": {
            "description": "Security audit: injection, authentication, secrets",
            "backends": ["gemini"],
            "prompts": [
                {
                    "name": "injection",
                    "prompt": _ask(
                        "injection risks in this codebase (SQL, shell, path traversal, templates)"
                    ),
                },
                {
                    "name": "auth",
                    "prompt": _ask("authentication or authorization weaknesses in this codebase"),
                },
                {
                    "name": "secrets",
                    "prompt": _ask("hard-coded secrets, keys or credentials in this codebase"),
                },
            ],
        },
    },
}


# --------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------


class Layers:
    """The merged raw document, where each key came from, and how to find its line."""

    def __init__(self) -> None:
        self.merged: dict[str, Any] = {}
        self.origins: dict[Key, str] = {}
        self.texts: dict[str, str] = {}
        self._lines: dict[str, tomlfile.KeyLines] = {}
        self.files: list[str] = []

    def add(self, label: str, data: dict[str, Any], text: str | None) -> None:
        """Merge one layer over the ones added before (`text` None: not a file)."""
        if text is not None:
            self.texts[label] = text
            self.files.append(label)
        self._merge(self.merged, data, (), label)

    def _merge(self, into: dict[str, Any], data: dict[str, Any], prefix: Key, label: str) -> None:
        for key, value in data.items():
            path = (*prefix, key)
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                self.origins[path] = label
                self._merge(into[key], value, path, label)
                continue
            into[key] = _copy(value)
            self._mark(path, value, label)

    def _mark(self, path: Key, value: Any, label: str) -> None:
        self.origins[path] = label
        if isinstance(value, dict):
            for key, inner in value.items():
                self._mark((*path, key), inner, label)

    def problem(self, path: Key, message: str, hint: str) -> Problem:
        """A Problem located at the file (and line) that set `path`."""
        label = self.origins.get(path)
        probe = path
        while label is None and probe:
            probe = probe[:-1]
            label = self.origins.get(probe)
        line = None
        if label in self.texts:
            lines = self._lines.get(label)
            if lines is None:
                lines = self._lines[label] = tomlfile.KeyLines(self.texts[label])
            line = lines.line(path)
        return Problem(message, label, line, hint)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
