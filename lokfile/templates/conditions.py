"""The original's condition language and loop sources, without Jinja.

Conditions (`when` / `if`) written in the original's forms are parsed here by a
small recursive-descent parser, so they evaluate without importing jinja2:

    contains(X.output, 'text')      substring of X's output ("…" quotes too)
    contains(X.FIELD, "text")       substring of a JSON field; a missing field is false
    equals(X.output, 'text')        X's output, trimmed, equals the text
    equals(X.FIELD, 'text')         the field's text equals it exactly
    not(CONDITION)
    steps.X.success                 false for a failed or skipped step
    steps.X.output contains 'text'  the oldest form

`X` may also be written `steps.X`. Inside the quotes, \\' \\" and \\\\ stand for
the character; other backslashes are literal. Unlike the original, `not(` is a
token (a `not(` inside a quoted string is just text), an unknown step is an
error, and anything else is handed to Jinja as an expression (`steps.a.success
and not steps.b.success`); if Jinja cannot parse it either, it is an error,
never silently true.

`for_each` sources in the original's forms (`steps.X.output`, `steps.X.FIELD`,
an inline JSON array) are resolved here too, with the original's rules and
error wording.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from lokfile.errors import TemplateError
from lokfile.outputs import MAX_DEPTH, MISSING, json_anywhere, json_value, loads
from lokfile.templates.scope import (
    STEP_ATTRS,
    Missing,
    StepRef,
    Steps,
    contains,
    equals,
    lookup,
    one_line,
)

_TOKEN = re.compile(
    r"""\s*(?:(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|(?P<name>[A-Za-z0-9_][A-Za-z0-9_-]*)|(?P<op>[.(),]))""",
    re.S,
)
_UNESCAPE = re.compile(r"\\([\\'\"])")
_STEP_SOURCE = re.compile(r"steps\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_]+)")


class Node:
    """One node of a parsed condition: op is not / contains / equals / success."""

    __slots__ = ("field", "inner", "op", "step", "text")

    def __init__(
        self, op: str, step: str = "", field: str = "", text: str = "", inner: Node | None = None
    ) -> None:
        self.op = op
        self.step = step
        self.field = field
        self.text = text
        self.inner = inner

    def evaluate(self, steps: Steps) -> bool:
        """The condition's value against the visible steps."""
        if self.op == "not":
            assert self.inner is not None
            return not self.inner.evaluate(steps)
        ref = steps.lok_get(self.step)
        if isinstance(ref, Missing):
            raise ref.error()
        value = lookup(ref, self.field)
        if self.op == "success":
            return bool(value)
        if self.op == "contains":
            return contains(value, self.text)
        return equals(value, self.text)

    def steps(self) -> set[str]:
        """The step names the condition reads."""
        if self.inner is not None:
            return self.inner.steps()
        return {self.step}


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else ("end", "")

    def take(self, kind: str, value: str | None = None) -> str:
        tok_kind, tok_value = self.peek()
        if tok_kind != kind or (value is not None and tok_value != value):
            raise _NoMatch
        self.pos += 1
        return tok_value

    def condition(self) -> Node:
        kind, value = self.peek()
        if kind == "name" and self.peek(1) == ("op", "("):
            if value == "not":
                self.pos += 2
                inner = self.condition()
                self.take("op", ")")
                return Node("not", inner=inner)
            if value in ("contains", "equals"):
                self.pos += 2
                step, field = self.reference()
                self.take("op", ",")
                text = self.take("str")
                self.take("op", ")")
                return Node(value, step, field, text)
        if kind == "name" and value == "steps":
            self.pos += 1
            self.take("op", ".")
            step = self.take("name")
            self.take("op", ".")
            field = self.take("name")
            if self.peek() == ("name", "contains"):
                self.pos += 1
                return Node("contains", step, field, self.take("str"))
            if field == "success":
                return Node("success", step, field)
        raise _NoMatch

    def reference(self) -> tuple[str, str]:
        names = [self.take("name")]
        while self.peek() == ("op", "."):
            self.pos += 1
            names.append(self.take("name"))
        if len(names) == 3 and names[0] == "steps":
            return names[1], names[2]
        if len(names) == 2:
            return names[0], names[1]
        raise _NoMatch


class _NoMatch(Exception):
    pass


def _tokens(text: str) -> list[tuple[str, str]] | None:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            return None
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "str":
            value = _UNESCAPE.sub(r"\1", value[1:-1])
        tokens.append((kind, value))
        pos = m.end()
    return tokens


@lru_cache(maxsize=1024)
def parse_condition(text: str) -> Node | None:
    """The condition in the original's language, or None if it is written otherwise."""
    tokens = _tokens(text)
    if not tokens:
        return None
    parser = _Parser(tokens)
    try:
        node = parser.condition()
    except _NoMatch:
        return None
    return node if parser.pos == len(tokens) else None


# ---------------------------------------------------------------------------
# for_each
# ---------------------------------------------------------------------------


def inline_array(text: str) -> list[Any]:
    """An inline JSON array source: `'["a", "b"]'`."""
    value = loads(text)
    if value is MISSING:
        try:
            json.loads(text)
            why = f"it nests deeper than {MAX_DEPTH} levels"
        except ValueError as exc:
            why = str(exc)
        except RecursionError:
            why = f"it nests deeper than {MAX_DEPTH} levels"
        raise TemplateError(
            f"for_each: failed to parse inline JSON array: {why}",
            'write a JSON array, e.g. for_each = \'["a", "b"]\'',
        )
    if not isinstance(value, list):
        raise TemplateError("for_each: the inline value is not a JSON array", "write [ … ]")
    return value


def step_source(text: str) -> tuple[str, str] | None:
    """(step, field) when the source is exactly `steps.X.FIELD`."""
    m = _STEP_SOURCE.fullmatch(text)
    return (m.group(1), m.group(2)) if m else None


def items_from_step(steps: Steps, name: str, field: str) -> list[Any]:
    """The items of `steps.NAME.FIELD`, by the original's rules (parsed value first,
    then JSON found in the text); a skipped step gives no items."""
    ref = steps.lok_get(name)
    if isinstance(ref, Missing):
        raise TemplateError(f"for_each: step '{name}' not found", ref.hint)
    assert isinstance(ref, StepRef)
    view = ref.view
    if view.skipped:
        return []
    if field in STEP_ATTRS and field != "output":  # steps.X.parsed: the step's own value
        return items_from_value(ref.lok_get(field))
    if field == "output":
        if view.parsed is not None:
            if not isinstance(view.parsed, list):
                raise TemplateError(
                    f"for_each: step '{name}' parsed_output is not an array",
                    "loop over one of its fields instead: steps.X.FIELD",
                )
            return list(view.parsed)
        return text_items(view.output, f"step '{name}' output")
    parsed = view.parsed if view.parsed is not None else json_value(view.output, "{")
    if not isinstance(parsed, dict):
        raise TemplateError(
            f"for_each: step '{name}' has no parsed output with fields",
            'its output must hold a JSON object (output_format = "json")',
        )
    if field not in parsed:
        raise TemplateError(
            f"for_each: step '{name}' output has no field '{field}'",
            f"its fields: {', '.join(map(str, parsed)) or 'none'}",
        )
    value = parsed[field]
    if not isinstance(value, list):
        raise TemplateError(
            f"for_each: '{name}.{field}' is not an array", "loop over an array field"
        )
    return value


def text_items(text: str, what: str) -> list[Any]:
    """The JSON array found in a text (fenced, raw, or the whole text)."""
    value = json_anywhere(text)
    if not isinstance(value, list):
        raise TemplateError(
            f"for_each: {what} is not a JSON array",
            'ask for a JSON array, or split lines with output_format = "lines"',
        )
    return value


def items_from_value(value: Any) -> list[Any]:
    """The items of a Jinja expression's value: a list, or text holding a JSON array."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        return text_items(value, "the value")
    if isinstance(value, dict):
        raise TemplateError(
            "for_each: the value is an object, not an array", "loop over one of its fields"
        )
    fail = getattr(type(value), "_fail_with_undefined_error", None)
    if fail is not None:
        fail(value)
    if hasattr(value, "__iter__") and not hasattr(value, "lok_get"):
        return list(value)
    raise TemplateError(
        f"for_each: the value is not an array: {one_line(repr(value))}",
        "write an expression that gives a list",
    )
