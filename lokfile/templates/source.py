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

`quick_split()` recognises templates whose markers are all `{{ a.b.c }}`
(optionally `| raw`), which the fast renderer handles without Jinja.
"""

from __future__ import annotations

import functools
import re

from lokfile.errors import TemplateError
from lokfile.templates.scope import TOP_NAMES

TEXT, EXPR, BLOCK = "text", "expr", "block"

_OPEN = re.compile(r"\{\{|\{%")
# strings, brackets and the two closers; the rest of a tag is skipped in one go
_TAG_TOKEN = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[()\[\]{}]|%\}""", re.S)
_ENDRAW = re.compile(r"\{%(-?)\s*endraw\s*([-+]?)%\}")
_STRING = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""", re.S)
_STEP_NAME = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_STEPS_DOT = re.compile(rf"(?<![\w.])steps\.({_STEP_NAME})", re.ASCII)
_BARE_CALL = re.compile(rf"(?<![\w.])(contains|equals)\(\s*(?!steps\.)({_STEP_NAME})\.", re.ASCII)
_RAW_SUFFIX = re.compile(r"\|\s*raw\s*$")
# a whole `{{ dotted.path }}` marker (optionally `| raw`): the common case, split in one go
_SIMPLE_MARKER = re.compile(
    rf"\{{\{{\s*((?:steps\.{_STEP_NAME}|[A-Za-z_]\w*)(?:\.(?:[A-Za-z_]\w*|\d+))*)"
    r"\s*(\|\s*raw\s*)?\}\}",
    re.ASCII,
)


# A piece of a template: (TEXT, literal), (EXPR, expression) or (BLOCK, "{% … %}").
Segment = tuple[str, str]


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
        if out and out[-1][0] == TEXT:
            out[-1] = (TEXT, out[-1][1] + s)
        else:
            out.append((TEXT, s))

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
        line = m.start()
        if closer == "}}":
            if not inner.strip():
                raise TemplateError(
                    f"empty '{{{{ }}}}' on line {_line(text, line)}",
                    "put a name inside, e.g. {{ steps.NAME.output }}",
                )
            out.append((EXPR, inner))
        elif inner.split(None, 1)[:1] == ["raw"]:
            close = _ENDRAW.search(text, pos)
            if close is None:
                raise TemplateError(
                    f"'{{% raw %}}' on line {_line(text, line)} has no '{{% endraw %}}'",
                    "add {% endraw %}",
                )
            body = text[pos : close.start()]
            if close.group(1):
                body = body.rstrip()
            literal(body)
            strip_next = close.group(2) == "-"
            pos = close.end()
        else:
            out.append((BLOCK, "{%" + inner + "%}"))
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


def quick_split(text: str) -> tuple[list[str], list[tuple[Path, bool]]] | None:
    """(literal pieces, (path, has `| raw`) per marker) when every marker of `text` is a
    plain dotted name, found by one regex split; None when `segments()` must decide.

    Gives what segments() would give for such texts (anything that
    could read differently, like `{{{` or a leftover `{{`, is left to segments()).
    """
    if "{{{" in text:
        return None
    parts = _SIMPLE_MARKER.split(text)
    pieces = parts[0::3]
    rest = "".join(pieces)
    if "{{" in rest or "{%" in rest:
        return None
    markers: list[tuple[Path, bool]] = []
    for dotted, raw in zip(parts[1::3], parts[2::3], strict=True):
        path = _dotted(dotted)
        if path is None:
            return None
        markers.append((path, raw is not None))
    return pieces, markers


@functools.lru_cache(maxsize=8192)
def _dotted(dotted: str) -> Path | None:
    names = dotted.split(".")
    if len(names) == 3 and names[0] == "steps" and names[2] == "output":
        return ("steps", names[1], "output")  # the common case, without the general loop
    if names[0] not in TOP_NAMES:
        return None
    path: list[str | int] = list(names[:2] if names[0] == "steps" else names[:1])
    path.extend(int(n) if n.isdigit() else n for n in names[len(path) :])
    return tuple(path)
