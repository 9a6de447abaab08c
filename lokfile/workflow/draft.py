"""A workflow file before checking: its text and tables, and the keys it may hold.

`loader` builds a `Draft` (one file, or several merged by `extends`);
`wfbuild` turns it into a `Workflow`. The key tables here say what each key
must hold, and turn what it holds into model values.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lokfile import tomlfile
from lokfile.durations import EXPECTED_MS, DurationError, parse_ms
from lokfile.errors import Problem
from lokfile.model import CONSENSUS_MODES, OUTPUT_FORMATS
from lokfile.tomlfile import BadValue, did_you_mean

Key = tuple[str | int, ...]


@dataclass
class Source:
    """One workflow file as read: its text, its document, and where its keys are."""

    label: str  # as shown in messages
    path: Path | None
    text: str
    data: dict[str, Any]
    origin: str
    _keys: tomlfile.KeyLines | None = field(default=None, repr=False)
    _headers: list[int] | None = field(default=None, repr=False)

    def keys(self) -> tomlfile.KeyLines:
        """The file's key lines (scanned on first use: only messages need them)."""
        if self._keys is None:
            self._keys = tomlfile.KeyLines(self.text)
        return self._keys

    def line(self, path: Key) -> int | None:
        """The line of the key at `path` (or of its table)."""
        return self.keys().line(path)

    def step_line(self, index: int) -> int | None:
        """The line of the `index`-th `[[steps]]` header."""
        if self._headers is None:
            steps = self.data.get("steps")
            count = len(steps) if isinstance(steps, list) else 0
            found = tomlfile.step_headers(self.text, count)
            if found is None:
                found = [self.line(("steps", i)) or 0 for i in range(count)]
            self._headers = found
        return self._headers[index] if index < len(self._headers) else None


@dataclass
class DraftStep:
    """A `[[steps]]` table and the file it came from."""

    table: dict[str, Any]
    source: Source
    index: int

    @property
    def line(self) -> int | None:
        """The line of this step's `[[steps]]` header."""
        return self.source.step_line(self.index)

    def key_line(self, key: str) -> int | None:
        """The line of `key` in this step, else the step's header line."""
        if key not in self.table:
            return self.line
        return self.source.line(("steps", self.index, key)) or self.line


@dataclass
class Draft:
    """A workflow after `extends` was merged, before checking."""

    source: Source  # the file asked for (the child)
    top: dict[str, tuple[Any, Source]]  # workflow-level keys with the file that set each
    steps: list[DraftStep]
    files: list[str]  # absolute paths: this file and every file it extends
    problems: list[Problem] = field(default_factory=list)  # found while reading and merging


# --------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------


def _ms(value: Any) -> int:
    try:
        return parse_ms(value)
    except DurationError:
        raise BadValue(EXPECTED_MS, value, '30000 or "30s"') from None


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        """`value` if it is one of the options."""
        if value not in options:
            raise BadValue("one of " + ", ".join(options), value, f'"{options[0]}"')
        return str(value)

    return check


def _for_each(value: Any) -> str:
    if isinstance(value, list):  # an inline TOML array reads better than a JSON string
        return json.dumps(value)
    return tomlfile.want_str(value)


def _verify(value: Any) -> str | None:
    if isinstance(value, bool):  # `verify = true` means the keyword "true" (auto-detect)
        return "true" if value else None
    return tomlfile.want_str(value)


def _positive(value: Any) -> int:
    return tomlfile.want_int(value, 1)


def _name(value: Any) -> str:
    text = tomlfile.want_str(value)
    if not text.strip():
        raise BadValue("a non-empty string", value, '"review"')
    return text


STEP_KEYS: dict[str, Callable[[Any], Any]] = {
    "name": _name,
    "backend": tomlfile.want_str,
    "backends": tomlfile.want_str_list,
    "prompt": tomlfile.want_str,
    "shell": tomlfile.want_str,
    "depends_on": tomlfile.want_str_list,
    "when": tomlfile.want_str,
    "if": tomlfile.want_str,
    "for_each": _for_each,
    "output_format": _choice(OUTPUT_FORMATS),
    "retries": tomlfile.want_int,
    "retry_delay": _ms,
    "timeout": _ms,
    "continue_on_error": tomlfile.want_bool,
    "min_deps_success": tomlfile.want_int,
    "consensus": _choice(CONSENSUS_MODES),
    "apply_edits": tomlfile.want_bool,
    "verify": _verify,
    "fix_retries": tomlfile.want_int,
    "sources": tomlfile.want_str_list,
    "env": tomlfile.want_str_list,
    "cache": tomlfile.want_bool,
    "outputs": tomlfile.want_str_list,
    "model": tomlfile.want_str,
    "system": tomlfile.want_str,
    "temperature": tomlfile.want_number,
    "seed": tomlfile.want_int,
    "max_tokens": _positive,
    "samples": _positive,
}

WORKFLOW_KEYS: dict[str, Callable[[Any], Any]] = {
    "name": _name,
    "description": tomlfile.want_str,
    "extends": _name,
    "continue_on_error": tomlfile.want_bool,
    "timeout": _ms,
    "backend": tomlfile.want_str,
    "sources": tomlfile.want_str_list,
    "env": tomlfile.want_str_list,
    "args": tomlfile.want_table,
    "concurrency": _positive,
    "steps": lambda value: value,  # checked table by table
}

ARG_KEYS = ("default", "description", "required")
# where each templated key's text is rendered, as `templates.references` names it
TEMPLATED = (("prompt", "prompt"), ("shell", "shell"), ("verify", "shell"))


def unknown_key(
    key: str, allowed: dict[str, Any] | tuple[str, ...], where: str
) -> tuple[str, str | None]:
    """(message, hint) for a key that is not allowed `where`; with a close match the
    message names it and there is no hint of its own (it would say the same again)."""
    close = did_you_mean(key, list(allowed))
    if close:
        return f"unknown key '{key}' {where} (did you mean '{close}'?)", None
    return f"unknown key '{key}' {where}", "valid keys: " + ", ".join(sorted(allowed))


def type_hint(key: str, exc: BadValue) -> str:
    """`for example: KEY = VALUE` for a value of the wrong type."""
    return f"for example: {key} = {exc.example}"
