"""Template text before Jinja sees it: markers, the original's forms, simple paths.

`segments()` splits a template into literal text, `{{ … }}` expressions and
`{% … %}` tags, applying Jinja's `-` whitespace control itself (so that the
shell lexer sees the text the shell will get) and turning `{% raw %}` blocks
into literal text. `{# … #}` is *not* a comment in lok templates: the original
had no comments, and `${#var}` is common in shell commands.

`rewrite()` turns the original's forms into Jinja: `steps.deep-dive` becomes
`steps["deep-dive"]` (any step name that is not an identifier), and, in
conditions, `contains(review.output, …)` becomes `contains(steps.review.output, …)`.
String literals inside expressions are left alone.

`simple_path()` recognises `{{ a.b.c }}` (optionally `| raw`), which the fast
renderer handles without Jinja.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lokfile.errors import TemplateError
from lokfile.template_scope import TOP_NAMES

TEXT, EXPR, BLOCK = "text", "expr", "block"

_OPEN = re.compile(r"\{\{|\{%")
# strings, brackets and the two closers; the rest of a tag is skipped in one go
_TAG_TOKEN = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[()\[\]{}]|%\}""", re.S)
_ENDRAW = re.compile(r"\{%(-?)\s*endraw\s*([-+]?)%\}")
_STRING = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""", re.S)
_STEP_NAME = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_STEPS_DOT = re.compile(rf"(?<![\w.])steps\.({_STEP_NAME})", re.ASCII)
_BARE_CALL = re.compile(rf"(?<![\w.])(contains|equals)\(\s*(?!steps\.)({_STEP_NAME})\.", re.ASCII)
_SIMPLE = re.compile(
    rf"\s*(?:steps\.(?P<step>{_STEP_NAME})|(?P<head>[A-Za-z_]\w*))"
    r"(?P<rest>(?:\.(?:[A-Za-z_]\w*|\d+))*)\s*(?P<raw>\|\s*raw\s*)?",
    re.ASCII,
)
_RAW_SUFFIX = re.compile(r"\|\s*raw\s*$")


@dataclass(frozen=True)
class Segment:
    """A piece of a template: literal text, an expression, or a `{% %}` tag."""

    kind: str
    text: str  # the literal text, the expression, or the whole tag `{% … %}`
    line: int = 1


def normalize_newlines(text: str) -> str:
    """CRLF and CR become LF, as Jinja does to template text."""
    if "\r" in text:
        return text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _scan_tag(text: str, start: int, closer: str) -> int:
    """Index of the closer of a tag whose body starts at `start` (strings and brackets
    inside the body are skipped); raises TemplateError if it never closes."""
    depth = 0
    pos = start
    while True:
        m = _TAG_TOKEN.search(text, pos) if closer == "%}" else _EXPR_TOKEN.search(text, pos)
        if m is None:
            opener = "{{" if closer == "}}" else "{%"
            raise TemplateError(
                f"unclosed '{opener}' on line {_line(text, start)}",
                f"close it with '{closer}', or write {{{{ '{opener}' }}}} for a literal '{opener}'",
            )
        tok = m.group()
        if tok == closer and depth == 0:
            return m.start()
        if tok in ("(", "[", "{"):
            depth += 1
        elif tok in (")", "]", "}"):
            depth = max(depth - 1, 0)
        elif tok == "}}":  # closes an inner bracket first
            depth -= 1
            pos = m.start() + 1
            continue
        pos = m.end()


_EXPR_TOKEN = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\}\}|[()\[\]{}]""", re.S)


def segments(text: str) -> list[Segment]:
    """The template's segments; adjacent literal text is merged."""
    out: list[Segment] = []
    pos = 0
    strip_next = False
    n = len(text)

    def literal(s: str) -> None:
        nonlocal strip_next
        if strip_next:
            s = s.lstrip()
            strip_next = False
        if not s:
            return
        if out and out[-1].kind == TEXT:
            out[-1] = Segment(TEXT, out[-1].text + s, out[-1].line)
        else:
            out.append(Segment(TEXT, s))

    while pos < n:
        m = _OPEN.search(text, pos)
        if m is None:
            literal(text[pos:])
            break
        start = m.end()
        lit = text[pos : m.start()]
        if start < n and text[start] in "-+":
            if text[start] == "-":
                lit = lit.rstrip()
            start += 1
        literal(lit)
        closer = "}}" if m.group() == "{{" else "%}"
        end = _scan_tag(text, start, closer)
        inner = text[start:end]
        if inner.endswith(("-", "+")):
            strip_next = inner.endswith("-")
            inner = inner[:-1]
        pos = end + 2
        line = _line(text, m.start())
        if closer == "}}":
            if not inner.strip():
                raise TemplateError(
                    f"empty '{{{{ }}}}' on line {line}",
                    "put a name inside, e.g. {{ steps.NAME.output }}",
                )
            out.append(Segment(EXPR, inner, line))
        elif inner.split(None, 1)[:1] == ["raw"]:
            close = _ENDRAW.search(text, pos)
            if close is None:
                raise TemplateError(
                    f"'{{% raw %}}' on line {line} has no '{{% endraw %}}'", "add {% endraw %}"
                )
            body = text[pos : close.start()]
            if close.group(1):
                body = body.rstrip()
            literal(body)
            strip_next = close.group(2) == "-"
            pos = close.end()
        else:
            out.append(Segment(BLOCK, "{%" + inner + "%}", line))
    return out


def _code_parts(expr: str) -> list[tuple[bool, str]]:
    """(is_code, text) pieces of an expression: string literals are not code."""
    parts: list[tuple[bool, str]] = []
    pos = 0
    for m in _STRING.finditer(expr):
        if m.start() > pos:
            parts.append((True, expr[pos : m.start()]))
        parts.append((False, m.group()))
        pos = m.end()
    if pos < len(expr):
        parts.append((True, expr[pos:]))
    return parts


def _subscript(m: re.Match[str]) -> str:
    name = m.group(1)
    if name.isidentifier():
        return m.group()
    return f'steps["{name}"]'


def rewrite(expr: str, condition: bool = False) -> str:
    """The expression in Jinja syntax (see the module docstring)."""
    if "steps." not in expr and not (condition and ("contains(" in expr or "equals(" in expr)):
        return expr
    out = []
    for is_code, part in _code_parts(expr):
        if is_code:
            if condition:
                part = _BARE_CALL.sub(r"\1(steps.\2.", part)
            part = _STEPS_DOT.sub(_subscript, part)
        out.append(part)
    return "".join(out)


def has_raw_filter(expr: str) -> bool:
    """Whether the expression ends in `| raw` (outside any string)."""
    parts = _code_parts(expr)
    return bool(parts) and parts[-1][0] and _RAW_SUFFIX.search(parts[-1][1]) is not None


Path = tuple[str | int, ...]


def simple_path(expr: str) -> tuple[Path, bool] | None:
    """(path, has `| raw`) when `expr` is a plain dotted name the fast renderer can
    resolve, else None. `steps.a-b.output.3` gives ("steps", "a-b", "output", 3)."""
    m = _SIMPLE.fullmatch(expr)
    if m is None:
        return None
    path: list[str | int]
    if m.group("step") is not None:
        path = ["steps", m.group("step")]
    else:
        head = m.group("head")
        if head not in TOP_NAMES:
            return None
        path = [head]
    rest = m.group("rest")
    if rest:
        path.extend(int(p) if p.isdigit() else p for p in rest[1:].split("."))
    return tuple(path), m.group("raw") is not None


def steps_in_path(path: Path) -> set[str]:
    """The step a simple path reads, if any."""
    if len(path) >= 2 and path[0] == "steps":
        return {str(path[1])}
    return set()
