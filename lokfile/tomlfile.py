"""Reading TOML files for people: size, encoding and syntax problems become one
located message, and a light scanner finds the line of any key.

tomllib reports no positions for keys, so `KeyLines` re-reads the text: it
tracks table headers (`[a.b]`, `[[steps]]`) and `key =` lines while skipping
the inside of strings. It is only as clever as messages need, and the full
scan runs only when a message needs a line (`step_headers` is the cheap path
the loader uses on every load).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# A workflow of 1000 steps is about 200 kB; anything this large is a mistake
# (a generated dump, a binary), and parsing it would only delay the message.
MAX_BYTES = 4 * 1024 * 1024

Path_ = tuple[str | int, ...]


class TomlProblem(Exception):
    """The file cannot be read as TOML: `message` says why, `line` where (if known)."""

    def __init__(self, message: str, line: int | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.hint = hint


_TOML_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")


def check_size(size: int) -> None:
    """TomlProblem if a file of `size` bytes is too big to be a workflow or config."""
    if size > MAX_BYTES:
        raise TomlProblem(
            f"file is {size / 1_048_576:.1f} MB; lok reads files of at most "
            f"{MAX_BYTES // 1_048_576} MB",
            hint="is this really a workflow or config file? split it, or move big text into "
            "files that a shell step reads",
        )


def read_bytes(path: Path) -> bytes:
    """The bytes of `path`, refusing (TomlProblem) before reading one that is too big."""
    with path.open("rb") as handle:
        check_size(os.fstat(handle.fileno()).st_size)
        return handle.read(MAX_BYTES + 1)


def decode(data: bytes) -> str:
    """The text of a TOML file, or TomlProblem for binary or non-UTF-8 bytes."""
    check_size(len(data))
    if b"\x00" in data[:8192]:
        raise TomlProblem(
            "file is binary, not TOML text",
            hint="a workflow or config file is UTF-8 text; check the path",
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TomlProblem(
            f"file is not UTF-8 (byte 0x{data[exc.start]:02x} at line {line})",
            line=line,
            hint="save the file as UTF-8",
        ) from None


def parse(text: str) -> dict[str, Any]:
    """The TOML document in `text`, or TomlProblem carrying tomllib's message and line."""
    # imported here: a run served from caches never needs the (pure Python) parser
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]
    try:
        document: dict[str, Any] = tomllib.loads(text)
        return document
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_LINE.search(message)
        line = int(found.group(1)) if found else None
        return_message = f"invalid TOML: {message}"
        raise TomlProblem(
            return_message,
            line=line,
            hint=_syntax_hint(text, message, line),
        ) from None


_SYNTAX_HINTS = (
    ("Unescaped '\\'", "in \"...\" a backslash starts an escape: write \\\\, or use '...' strings"),
    ("Cannot overwrite a value", "a key may appear only once per table"),
    ("Cannot declare", "a table may appear only once; use [[...]] for a list of tables"),
    ("Expected '=' after a key", "write key = value"),
    ("Illegal character '\\n'", 'a "..." string ends on its line; use """...""" for several'),
    ("Unterminated string", "a string is not closed: check its quotes"),
    ("Invalid value", 'strings need quotes (key = "text"); lists need brackets'),
)


def _syntax_hint(text: str, message: str, line: int | None) -> str:
    hint = next((h for fragment, h in _SYNTAX_HINTS if fragment in message), "")
    if line is not None:
        lines = text.splitlines()
        shown = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        if len(shown) > 50:
            shown = shown[:47] + "..."
        if shown:
            return f"{hint or 'check quotes, brackets and = signs'} (line {line}: {shown})"
    return hint or "check quotes, brackets and = signs; every string value needs quotes"


def read(path: Path) -> tuple[str, dict[str, Any]]:
    """(text, document) of a TOML file; TomlProblem (or OSError) if it cannot be had."""
    text = decode(read_bytes(path))
    return text, parse(text)


# --------------------------------------------------------------------------
# Where keys are
# --------------------------------------------------------------------------

_TRIPLE = re.compile(r'"""|\'\'\'')
_BARE_KEY = r"[A-Za-z0-9_-]+"
_KEY_PART = rf'(?:{_BARE_KEY}|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_KEY_LINE = re.compile(rf"[ \t]*({_KEY_PART}(?:[ \t]*\.[ \t]*{_KEY_PART})*)[ \t]*=")
_HEADER = re.compile(rf"[ \t]*(\[\[?)[ \t]*({_KEY_PART}(?:[ \t]*\.[ \t]*{_KEY_PART})*)[ \t]*\]\]?")
_SPLIT_KEY = re.compile(rf"[ \t]*({_KEY_PART})[ \t]*\.?")


def step_headers(text: str, expected: int) -> list[int] | None:
    """Line numbers of the `[[steps]]` headers, if a quick scan finds exactly `expected`.

    The quick scan ignores headers inside multi-line strings only roughly;
    None means "not sure", and the caller asks `KeyLines` instead.
    """
    if expected == 0:
        return []
    starts = []
    pos = text.find("[[steps]]")
    while pos >= 0:  # str.find is several times faster than a multi-line regex here
        line_start = text.rfind("\n", 0, pos) + 1
        if not text[line_start:pos].strip(" \t"):
            starts.append(pos)
        pos = text.find("[[steps]]", pos + 9)
    if '"""' in text or "'''" in text:
        inside = _string_spans(text)
        starts = [s for s in starts if not any(a <= s < b for a, b in inside)]
    if len(starts) != expected:
        return None
    lines: list[int] = []
    line, pos = 1, 0
    for start in starts:
        line += text.count("\n", pos, start)
        pos = start
        lines.append(line)
    return lines


def _string_spans(text: str) -> list[tuple[int, int]]:
    """Rough spans of multi-line strings, enough to drop fake headers inside prompts."""
    spans: list[tuple[int, int]] = []
    pos = 0
    while True:
        opening = _TRIPLE.search(text, pos)
        if opening is None:
            return spans
        closing = text.find(opening.group(), opening.end())
        if closing < 0:
            spans.append((opening.start(), len(text)))
            return spans
        spans.append((opening.start(), closing + 3))
        pos = closing + 3


def _key_parts(dotted: str) -> list[str]:
    parts = []
    for match in _SPLIT_KEY.finditer(dotted):
        raw = match.group(1)
        if raw[:1] in "\"'":
            raw = raw[1:-1]
        parts.append(raw)
    return parts


class KeyLines:
    """Line numbers of table headers and keys in a TOML text.

    Paths are tuples: `("steps", 2, "depends_on")` is the `depends_on` key of
    the third `[[steps]]` table; `("backends", "ollama")` the header of
    `[backends.ollama]`.
    """

    def __init__(self, text: str) -> None:
        self.headers: dict[Path_, int] = {}
        self.keys: dict[Path_, int] = {}
        self._arrays: dict[tuple[str, ...], int] = {}
        self._scan(text)

    def line(self, path: Path_) -> int | None:
        """The line of the key or header at `path`, else of the nearest enclosing one."""
        probe = tuple(path)
        while probe:
            found = self.keys.get(probe) or self.headers.get(probe)
            if found:
                return found
            probe = probe[:-1]
        return None

    # the scanner -----------------------------------------------------------

    def _resolve(self, names: list[str]) -> list[str | int]:
        out: list[str | int] = []
        for i in range(len(names)):
            out.append(names[i])
            index = self._arrays.get(tuple(names[: i + 1]))
            if index is not None and i < len(names) - 1:
                out.append(index)
        return out

    def _scan(self, text: str) -> None:
        table: list[str | int] = []
        closing: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            pos = 0
            if closing is not None:
                end = _find_close(line, 0, closing)
                if end < 0:
                    continue
                closing, pos = None, end
            else:
                header = _HEADER.match(line)
                key = _KEY_LINE.match(line)
                if header and not key:
                    names = _key_parts(header.group(2))
                    if header.group(1) == "[[":
                        prefix = tuple(names)
                        self._arrays[prefix] = self._arrays.get(prefix, -1) + 1
                        table = [*self._resolve(names[:-1]), names[-1], self._arrays[prefix]]
                    else:
                        table = self._resolve(names)
                    self.headers.setdefault(tuple(table), number)
                    continue
                if key:
                    names = _key_parts(key.group(1))
                    for depth in range(1, len(names) + 1):
                        self.keys.setdefault((*table, *names[:depth]), number)
                    pos = key.end()
            closing = _open_multiline(line, pos)


def _find_close(line: str, pos: int, delimiter: str) -> int:
    """Index just past `delimiter` closing a multi-line string, or -1."""
    while True:
        found = line.find(delimiter, pos)
        if found < 0:
            return -1
        if delimiter == '"""' and _escaped(line, found):
            pos = found + 1
            continue
        end = found + 3
        while line[end : end + 1] == delimiter[0]:  # `""""` closes with a quote inside
            end += 1
        return end


def _escaped(line: str, index: int) -> bool:
    backslashes = 0
    while index - backslashes - 1 >= 0 and line[index - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def _open_multiline(line: str, pos: int) -> str | None:
    """The delimiter of a multi-line string left open at the end of `line`, if any."""
    for kind, start in _strings(line, pos):
        if kind in ('"""', "'''"):
            end = _find_close(line, start + 3, kind)
            if end < 0:
                return kind
    return None


def _strings(line: str, pos: int) -> Iterator[tuple[str, int]]:
    """Each string opening after `pos` (its delimiter and index), skipping their insides."""
    n = len(line)
    while pos < n:
        char = line[pos]
        if char == "#":
            return
        if char in "\"'":
            triple = char * 3
            if line.startswith(triple, pos):
                yield triple, pos
                end = _find_close(line, pos + 3, triple)
                if end < 0:
                    return
                pos = end
                continue
            yield char, pos
            end = pos + 1
            while end < n and line[end] != char:
                end += 2 if (char == '"' and line[end] == "\\") else 1
            pos = end + 1
            continue
        pos += 1


# --------------------------------------------------------------------------
# Checking values, with messages that say what was expected
# --------------------------------------------------------------------------


class BadValue(ValueError):
    """A value of the wrong type or range; `expected` completes "KEY must be …"."""

    def __init__(self, expected: str, value: object, example: str = "...") -> None:
        super().__init__(expected)
        self.expected = expected
        self.value = value
        self.example = example

    def message(self, key: str) -> str:
        """`retries must be a non-negative integer, got "three"`."""
        return f"{key} must be {self.expected}, got {describe(self.value)}"


def describe(value: object) -> str:
    """A short TOML-like rendering of a value for messages."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = '"' + value.replace("\n", "\\n") + '"'
    elif isinstance(value, dict):
        text = "a table"
    elif isinstance(value, list):
        text = (
            "[" + ", ".join(describe(v) for v in value[:4]) + (", ...]" if len(value) > 4 else "]")
        )
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def want_str(value: object) -> str:
    """`value` if it is a string."""
    if not isinstance(value, str):
        raise BadValue("a string", value, '"text"')
    return value


def want_bool(value: object) -> bool:
    """`value` if it is true or false."""
    if not isinstance(value, bool):
        raise BadValue("true or false", value, "true")
    return value


def want_int(value: object, minimum: int = 0) -> int:
    """`value` if it is an integer of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        label = "a non-negative integer" if minimum == 0 else f"an integer of at least {minimum}"
        raise BadValue(label, value, str(max(minimum, 3)))
    return value


def want_number(value: object) -> float:
    """`value` as a float if it is a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadValue("a number", value, "0.5")
    return float(value)


def want_str_list(value: object) -> tuple[str, ...]:
    """`value` as a tuple if it is a list of strings."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadValue("a list of strings", value, '["a", "b"]')
    return tuple(value)


def want_table(value: object) -> dict[str, Any]:
    """`value` if it is a table."""
    if not isinstance(value, dict):
        raise BadValue("a table", value, '{ key = "value" }')
    return value


def did_you_mean(word: str, choices: list[str] | tuple[str, ...] | set[str]) -> str | None:
    """The choice closest to `word` (a typo, a hyphen for an underscore), if any is close."""
    options = sorted(choices)
    normal = word.replace("-", "_").lower()
    for option in options:
        if option.replace("-", "_").lower() == normal:
            return option
    import difflib  # only on the error path

    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return close[0] if close else None
