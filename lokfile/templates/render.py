"""Templates: prompts, shell commands, conditions and loop sources, rendered.

Jinja2 with undefined names as errors, plus the original's forms (see
`scope` for the names, `source` for the rewriting, `conditions` for `when`
and `for_each`, `jinja` for the environment). Shell commands quote every
value for the place it lands (see `shellquote`); `{{ x | raw }}` opts out.

Three renderers give the same text (a hypothesis test holds them to it):
a template without `{{`/`{%` is returned as is; one made only of plain dotted
names (`{{ steps.a.output }}`, `{{ arg.1 }}`) is rendered by a small loop here;
everything else goes through Jinja (`templates.jinja`, the only jinja2 user),
which is imported on first use only. Compiled templates are cached by text.
Only this module, `scope` and `outputs` load with `import
lokfile.templates.render`; the rest loads when needed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lokfile.errors import TemplateError
from lokfile.outputs import (
    extract_json_array,
    extract_json_field,
    extract_json_object,
    parse_output,
    sanitize_json_strings,
)
from lokfile.templates.scope import (
    NO_ITEM,
    Context,
    Missing,
    StepView,
    lookup,
    scope,
    to_text,
    unknown_name,
)

if TYPE_CHECKING:
    from lokfile.templates.jinja import Code
    from lokfile.templates.shellquote import Place
    from lokfile.templates.source import Path, Segment

__all__ = [
    "NO_ITEM",
    "Context",
    "StepView",
    "eval_condition",
    "eval_for_each",
    "extract_json_array",
    "extract_json_field",
    "extract_json_object",
    "names_read",
    "parse_output",
    "references",
    "render_prompt",
    "render_shell",
    "sanitize_json_strings",
]

KINDS = ("prompt", "shell", "condition", "for_each")

# Specialised lookups of the fast path (each falls back to the general one)
_GENERAL, _STEP_OUTPUT, _POSITIONAL = 0, 1, 2


class _Marker:
    """A plain `{{ dotted.path }}` of the fast path; place None means no quoting."""

    __slots__ = ("path", "place", "shape")

    def __init__(self, path: Path, place: Place | None) -> None:
        self.path = path
        self.place = place
        if len(path) == 3 and path[0] == "steps" and path[2] == "output":
            self.shape = _STEP_OUTPUT
        elif len(path) == 2 and path[0] in ("arg", "args") and isinstance(path[1], int):
            self.shape = _POSITIONAL
        else:
            self.shape = _GENERAL


class _Compiled:
    """A template (or expression), compiled once and cached by its text."""

    __slots__ = ("free", "names", "needs", "parts", "places", "source", "steps", "template")

    def __init__(self, parts: list[str | _Marker] | None, source: str = "") -> None:
        self.parts = parts  # the fast path, when every marker is a plain name
        self.source = source  # the Jinja source otherwise
        self.places: Sequence[Place] = ()
        self.names: Sequence[str] = ()  # each quoted marker's expression, for messages
        self.steps: frozenset[str] = frozenset()
        self.free: frozenset[str] = frozenset()  # top-level names the Jinja code reads
        self.needs = 0  # the highest positional argument every rendering reads (0: none)
        self.template: Any = None

    def take(self, code: Code) -> None:
        """Jinja's compiled object and what it reads."""
        self.template = code.template
        self.free = code.free
        self.steps = code.steps
        self.needs = code.needs

    def render(self, ctx: Context) -> str:
        if self.parts is not None:
            if self.free:  # item / index: check them first, as the Jinja path does
                _check_free(self.free, scope(ctx))
            return _render_fast(self.parts, ctx)
        return _render_jinja(self, ctx)


def _needs_work(text: str) -> bool:
    return "{{" in text or "{%" in text


def _plain(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def render_prompt(template: str, ctx: Context) -> str:
    """The prompt with every `{{ … }}` filled in; TemplateError if a name is undefined."""
    if not _needs_work(template):
        return _plain(template)
    return _compile(template, "prompt").render(ctx)


def render_shell(template: str, ctx: Context) -> str:
    """The command with every value quoted for the place it lands (`| raw` opts out)."""
    if not _needs_work(template):
        return _plain(template)
    return _compile(template, "shell").render(ctx)


def positional_needed(text: str, kind: str) -> int:
    """The highest positional argument (`{{ arg.N }}`) that rendering `text` always reads,
    whatever the context: one outside every `{% if %}`/`{% for %}` and without a filter
    such as `| default`. 0 when there is none; raises TemplateError if `text` does not
    compile. A run given fewer arguments cannot render the template."""
    if not _needs_work(text):
        return 0
    return _compile(text, kind).needs


TOP_NAMES = ("arg", "args", "env", "steps", "workflow")  # every template may read these
LOOP_NAMES = ("item", "index")  # and these in a for_each step


def names_read(text: str, kind: str) -> set[str]:
    """The top-level names `text` reads (a template, a condition or a loop source), the
    ones it defines itself (`{% set %}`, loop variables) and Jinja's globals left out;
    raises TemplateError if it does not compile."""
    if kind in ("prompt", "shell"):
        if not _needs_work(text):
            return set()
        compiled = _compile(text, kind)
        if compiled.parts is not None:
            return {str(p.path[0]) for p in compiled.parts if isinstance(p, _Marker)}
        return set(compiled.free)
    plain = _unwrap(text)
    if not plain:
        return set()
    if kind == "condition":
        from lokfile.templates.conditions import parse_condition

        if parse_condition(plain) is not None:
            return set()  # the original's forms name steps only
        return set(_expression(plain, condition=True).free)
    if kind == "for_each":
        from lokfile.templates.conditions import step_source

        if (plain.startswith("[") and not _wrapped(text)) or step_source(plain) is not None:
            return set()
        return set(_expression(plain, condition=False).free)
    raise ValueError(f"unknown template kind {kind!r}; expected one of {', '.join(KINDS)}")


def references(text: str, kind: str) -> set[str]:
    """The step names `text` reads (a template, a condition or a loop source); raises
    TemplateError if it does not compile."""
    if kind in ("prompt", "shell"):
        if not _needs_work(text):
            return set()
        return set(_compile(text, kind).steps)
    if kind == "condition":
        return _condition_refs(text)
    if kind == "for_each":
        return _for_each_refs(text)
    raise ValueError(f"unknown template kind {kind!r}; expected one of {', '.join(KINDS)}")


# ---------------------------------------------------------------------------
# Compiling
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _compile(text: str, kind: str) -> _Compiled:
    return _build(text, kind, fast=True)


def _build(text: str, kind: str, fast: bool) -> _Compiled:
    """Compile `text`; with fast=False, through Jinja even when the fast path could
    render it (the equivalence tests compare the two)."""
    from lokfile.templates import shellquote
    from lokfile.templates import source as template_source

    text = _plain(text)
    shell = kind == "shell"
    quick = template_source.quick_split(text) if fast else None
    if quick is not None:
        pieces, markers = quick
        places = shellquote.places(pieces) if shell else []
        parts: list[str | _Marker] = []
        steps: set[str] = set()
        free: set[str] = set()
        needs = 0
        for i, (path, raw) in enumerate(markers):
            if pieces[i]:
                parts.append(pieces[i])
            parts.append(_Marker(path, places[i] if shell and not raw else None))
            head = path[0]
            if head in ("arg", "args") and len(path) == 2 and isinstance(path[1], int):
                needs = max(needs, path[1])
            if head == "steps":
                if len(path) > 1:
                    steps.add(str(path[1]))
            elif head == "item" or head == "index":
                free.add(head)
        if pieces[-1]:
            parts.append(pieces[-1])
        compiled = _Compiled(parts)
        compiled.places = places
        compiled.free = frozenset(free)
        compiled.steps = frozenset(steps)
        compiled.needs = needs
        return compiled
    segs = template_source.segments(text)
    places = []
    if shell:
        pieces = [""]
        for seg_kind, seg_text in segs:
            if seg_kind == template_source.EXPR:
                pieces.append("")
            elif seg_kind == template_source.TEXT:
                pieces[-1] += seg_text
        places = shellquote.places(pieces)
    compiled = _Compiled(None, _jinja_source(segs, shell))
    compiled.places = places
    compiled.names = [t.strip() for k, t in segs if k == template_source.EXPR]
    from lokfile.templates.jinja import compile_template

    compiled.take(compile_template(compiled.source))
    return compiled


_JINJA_TRAPS = ("{{", "{%", "{#")


def _jinja_source(segs: Sequence[Segment], shell: bool) -> str:
    from lokfile.templates.source import BLOCK, TEXT, has_raw_filter, rewrite

    out: list[str] = []
    marker = 0
    for kind, text in segs:
        if kind == TEXT:
            if any(t in text for t in _JINJA_TRAPS) or text.endswith("{"):
                text = "{% raw %}" + text + "{% endraw %}"
            out.append(text)
        elif kind == BLOCK:
            out.append("{%" + rewrite(text[2:-2]) + "%}")
        else:
            expr = rewrite(text)
            if shell and not has_raw_filter(expr):
                out.append(f"{{{{ _lok_q(({expr}), _lok_places[{marker}], {marker}) }}}}")
            else:
                out.append(f"{{{{ {expr} }}}}")
            marker += 1
    return "".join(out)


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def _quote(text: str, place: Place) -> str:
    """shellquote.quote, imported on first use (then this name points straight at it)."""
    global _quote
    from lokfile.templates.shellquote import quote

    _quote = quote
    return quote(text, place)


def _dotted(path: Path) -> str:
    return ".".join(str(key) for key in path)


def _resolve(path: Path, names: dict[str, Any]) -> Any:
    head = str(path[0])
    if head not in names:
        raise unknown_name(head, names)
    value = names[head]
    for key in path[1:]:
        value = lookup(value, key)
        if isinstance(value, Missing):
            raise value.error()
    return value


def _render_fast(parts: Sequence[str | _Marker], ctx: Context) -> str:
    quote = _quote
    names: dict[str, Any] | None = None
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        text: Any = None
        if part.shape == _STEP_OUTPUT:
            view = ctx.steps.get(str(part.path[1]))
            if view is not None:
                text = view.output
        elif part.shape == _POSITIONAL:
            number = int(part.path[1])
            if 0 < number <= len(ctx.args):
                text = ctx.args[number - 1]
        if type(text) is not str:
            if names is None:
                names = scope(ctx)
            text = to_text(_resolve(part.path, names))
        if part.place is None:
            out.append(text)
            continue
        try:
            out.append(quote(text, part.place))
        except TemplateError as exc:
            from lokfile.templates.shellquote import named_refusal

            raise named_refusal(_dotted(part.path), exc) from None
    return "".join(out)


def _check_free(free: frozenset[str], names: dict[str, Any]) -> None:
    for name in sorted(free):
        if name not in names:
            raise unknown_name(name, names)


def _render_jinja(compiled: _Compiled, ctx: Context) -> str:
    from lokfile.templates.jinja import guard

    names = scope(ctx)
    _check_free(compiled.free, names)
    names["_lok_places"] = compiled.places
    names["_lok_names"] = compiled.names
    text: str = guard(lambda: str(compiled.template.render(names)))
    return text


# ---------------------------------------------------------------------------
# Conditions and loop sources
# ---------------------------------------------------------------------------


def eval_condition(expr: str, ctx: Context) -> bool:
    """A `when` / `if` condition: the original's forms or a Jinja expression."""
    text = _unwrap(expr)
    if not text:
        return True  # an empty condition is no condition, as in the original
    from lokfile.templates.conditions import parse_condition

    node = parse_condition(text)
    names = scope(ctx)
    if node is not None:
        return node.evaluate(names["steps"])
    compiled = _expression(text, condition=True)
    _check_free(compiled.free, names)
    from lokfile.templates.jinja import guard

    return bool(guard(lambda: compiled.template(**names)))


def eval_for_each(expr: str, ctx: Context) -> list[Any]:
    """A `for_each` source's items: an inline JSON array, `steps.X.output`,
    `steps.X.FIELD`, or a Jinja expression that gives a list."""
    from lokfile.templates.conditions import (
        inline_array,
        items_from_step,
        items_from_value,
        step_source,
    )

    text = _unwrap(expr)
    if text.startswith("[") and not _wrapped(expr):
        return inline_array(text)
    names = scope(ctx)
    source = step_source(text)
    if source is not None:
        return items_from_step(names["steps"], *source)
    compiled = _expression(text, condition=False)
    _check_free(compiled.free, names)
    from lokfile.templates.jinja import guard

    return items_from_value(guard(lambda: compiled.template(**names)))


def _wrapped(expr: str) -> bool:
    text = expr.strip()
    return text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1


def _unwrap(expr: str) -> str:
    """`{{ x }}` around a whole condition or loop source means just `x`."""
    text = expr.strip()
    return text[2:-2].strip() if _wrapped(text) else text


def _condition_refs(expr: str) -> set[str]:
    text = _unwrap(expr)
    if not text:
        return set()
    from lokfile.templates.conditions import parse_condition

    node = parse_condition(text)
    if node is not None:
        return node.steps()
    return set(_expression(text, condition=True).steps)


def _for_each_refs(expr: str) -> set[str]:
    from lokfile.templates.conditions import inline_array, step_source

    text = _unwrap(expr)
    if text.startswith("[") and not _wrapped(expr):
        inline_array(text)
        return set()
    source = step_source(text)
    if source is not None:
        return {source[0]}
    return set(_expression(text, condition=False).steps)


@functools.lru_cache(maxsize=1024)
def _expression(text: str, condition: bool) -> _Compiled:
    from lokfile.templates.jinja import compile_expression
    from lokfile.templates.source import rewrite

    source = rewrite(text, condition=condition)
    compiled = _Compiled(None, source)
    compiled.take(compile_expression(source, text, condition))
    return compiled
