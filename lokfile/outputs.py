"""Reading structure out of step outputs: JSON found in LLM prose, lines, `output_format`.

LLMs wrap JSON in Markdown fences, put prose before it, and break strings
across lines. These helpers find it the way the original did (fences first,
then raw brackets), with its known weaknesses fixed: bracket matching is
string-aware, a candidate that does not parse gives way to the next one, and
raw control characters inside strings are tolerated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

MISSING: Any = object()  # "no value", distinct from a JSON null
# JSON nested deeper reads as text: lok walks values recursively (templates, keys, loops),
# and Python's parsers and encoders stop near 1,000 levels with a RecursionError
MAX_DEPTH = 200

_FENCE = "```"
_JSON_FENCE = re.compile(r"```[ \t]*json[ \t]*\n?", re.IGNORECASE)
_ANY_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[ \t]*(?:\n|$)")
_OPENERS = {"{": "}", "[": "]"}
_MAX_CANDIDATES = 64  # raw candidates tried per text: bounds the cost on huge outputs


def find_closing_fence(text: str) -> int | None:
    """Where a fenced block's content ends: 0 if `text` starts with a fence, else the
    index of the newline before the first fence that starts a line, else None.

    A fence must start a line, so backticks inside the content never close it.
    """
    if text.startswith(_FENCE):
        return 0
    at = text.find("\n" + _FENCE)
    return at if at >= 0 else None


def _fenced(text: str, json_only: bool) -> Iterator[str]:
    """Contents of the ```json fences (json_only) or of every fence, in order."""
    pattern = _JSON_FENCE if json_only else _ANY_FENCE
    pos = 0
    while True:
        m = pattern.search(text, pos)
        if m is None:
            return
        body = text[m.end() :]
        end = find_closing_fence(body)
        content = body if end is None else body[:end]
        yield content.strip()
        if end is None:
            return
        pos = m.end() + end + 1 + len(_FENCE)


def _balanced(text: str, start: int) -> str | None:
    """The bracketed value opening at `text[start]`, skipping brackets inside strings."""
    opener = text[start]
    closer = _OPENERS[opener]
    depth = 0
    in_string = False
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if in_string:
            if c == "\\":
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == opener:
            depth += 1
        elif c == closer:
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
        i += 1
    return None


def _raw(text: str, opener: str) -> Iterator[str]:
    """Balanced candidates starting at each `opener` in turn."""
    pos = text.find(opener)
    tried = 0
    while pos >= 0 and tried < _MAX_CANDIDATES:
        tried += 1
        candidate = _balanced(text, pos)
        if candidate is not None:
            yield candidate
        pos = text.find(opener, pos + 1)


def _candidates(text: str, opener: str) -> Iterator[str]:
    """Texts that may hold the first JSON object (`{`) or array (`[`), best first."""
    for content in _fenced(text, json_only=True):
        if content.startswith(opener):
            yield content
        elif loads(content) is not MISSING:
            return  # a ```json block holding other JSON is the answer: no guessing past it
    for content in _fenced(text, json_only=False):
        if content.startswith(opener):
            yield content
    yield from _raw(text, opener)


def sanitize_json_strings(text: str) -> str:
    """Escape raw newlines, CRs, tabs and other control characters inside JSON strings."""
    out: list[str] = []
    in_string = False
    escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
            elif c < " ":
                c = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c, f"\\u{ord(c):04x}")
        elif c == '"':
            in_string = True
        out.append(c)
    return "".join(out)


def loads(text: str) -> Any:
    """Parse JSON, retrying once with control characters in strings escaped; MISSING if
    it is not JSON, or nests deeper than MAX_DEPTH."""
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = json.loads(sanitize_json_strings(text))
        except (ValueError, RecursionError):
            return MISSING
    except RecursionError:
        return MISSING
    return MISSING if deeper_than(value, MAX_DEPTH, text) else value


def deeper_than(value: Any, limit: int, text: str | None = None) -> bool:
    """Whether lists and dicts in `value` nest more than `limit` levels (walked without
    recursion). `text`, the source, lets a shallow document skip the walk."""
    if not isinstance(value, (dict, list)):
        return False
    if text is not None and text.count("[") + text.count("{") <= limit:
        return False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def _first(text: str, opener: str) -> tuple[str | None, Any]:
    """(the first candidate that parses, its value), else (the first candidate, MISSING)."""
    first: str | None = None
    for candidate in _candidates(text, opener):
        value = loads(candidate)
        if value is not MISSING:
            return candidate, value
        if first is None:
            first = candidate
    return first, MISSING


def extract_json_object(text: str) -> str | None:
    """The text of the first JSON object in `text` (```json fence, other fence, raw
    braces), preferring one that parses."""
    return _first(text, "{")[0]


def extract_json_array(text: str) -> str | None:
    """The text of the first JSON array in `text` (fences, then raw brackets),
    preferring one that parses."""
    return _first(text, "[")[0]


@lru_cache(maxsize=64)
def json_value(text: str, opener: str) -> Any:
    """The first parseable JSON object (`{`) or array (`[`) found in `text`, or MISSING.

    Cached: one step's output is read by many downstream templates.
    """
    return _first(text, opener)[1]


def json_field(text: str, field: str) -> Any:
    """Top-level `field` of the first JSON object in `text`, or MISSING."""
    obj = json_value(text, "{")
    if isinstance(obj, dict) and field in obj:
        return obj[field]
    return MISSING


def extract_json_field(text: str, field: str) -> Any | None:
    """Top-level `field` of the first JSON object in `text`; None when absent."""
    value = json_field(text, field)
    return None if value is MISSING else value


def json_anywhere(text: str) -> Any:
    """Any JSON in `text`: an array first when a `[` comes before every `{`, else an
    object first; then the whole text (so a bare `42` is a number). MISSING if none."""
    arr, obj = text.find("["), text.find("{")
    order = ("[", "{") if arr >= 0 and (obj < 0 or arr < obj) else ("{", "[")
    for opener in order:
        value = json_value(text, opener)
        if value is not MISSING:
            return value
    return loads(text.strip())


def split_lines(text: str) -> list[str]:
    """Lines as the original split them: on newlines, without a trailing empty line."""
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _jsonl(text: str) -> list[Any] | None:
    body = text
    for content in _fenced(text, json_only=False):
        body = content
        break
    values = []
    for line in split_lines(body):
        if not line.strip():
            continue
        value = loads(line)
        if value is MISSING:
            return None
        values.append(value)
    return values


def parse_output(text: str, output_format: str) -> Any | None:
    """The structured value of a step's output for its `output_format`, or None.

    json: any JSON found (see json_anywhere); json_array: an array only; jsonl: one
    value per non-blank line (a fence around them is fine); lines: the lines;
    text and anything else: None. Output that does not parse gives None.
    """
    if output_format == "json":
        value = json_anywhere(text)
        return None if value is MISSING else value
    if output_format == "json_array":
        value = json_value(text, "[")
        if value is MISSING:
            value = loads(text.strip())
        return value if isinstance(value, list) else None
    if output_format == "jsonl":
        return _jsonl(text)
    if output_format == "lines":
        return split_lines(text)
    return None
