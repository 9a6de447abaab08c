"""Templates: prompts, shell commands, conditions and loop sources. The only jinja2 user.

Jinja2 with undefined names as errors, plus the original's forms (see
`template_scope` for the names, `template_source` for the rewriting,
`conditions` for `when` and `for_each`). Shell commands quote every value for
the place it lands (see `shellquote`); `{{ x | raw }}` opts out.

Three renderers give the same text (a hypothesis test holds them to it):
a template without `{{`/`{%` is returned as is; one made only of plain dotted
names (`{{ steps.a.output }}`, `{{ arg.1 }}`) is rendered by a small loop here;
everything else goes through Jinja, which is imported on first use only.
Compiled templates are cached by text.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lokfile import shellquote
from lokfile.conditions import (
    inline_array,
    items_from_step,
    items_from_value,
    parse_condition,
    step_source,
)
from lokfile.errors import TemplateError
from lokfile.outputs import (
    extract_json_array,
    extract_json_field,
    extract_json_object,
    parse_output,
    sanitize_json_strings,
)
from lokfile.template_scope import (
    NO_ITEM,
    Context,
    Missing,
    StepView,
    contains,
    equals,
    lookup,
    scope,
    to_json,
    to_text,
    unknown_name,
)
from lokfile.template_source import (
    BLOCK,
    EXPR,
    TEXT,
    Path,
    has_raw_filter,
    normalize_newlines,
    rewrite,
    segments,
    simple_path,
    steps_in_path,
)

__all__ = [
    "NO_ITEM",
    "Context",
    "StepView",
    "eval_condition",
    "eval_for_each",
    "extract_json_array",
    "extract_json_field",
    "extract_json_object",
    "parse_output",
    "references",
    "render_prompt",
    "render_shell",
    "sanitize_json_strings",
]

KINDS = ("prompt", "shell", "condition", "for_each")

# A fast-path part: literal text, or (path, place); place None means no quoting.
_Part = str | tuple[Path, shellquote.Place | None]


@dataclass
class _Compiled:
    """A template, compiled once and cached by its text."""

    text: str
    parts: list[_Part] | None  # the fast path, when every marker is a plain name
    source: str = ""  # the Jinja source otherwise
    places: Sequence[shellquote.Place] = ()
    steps: frozenset[str] = frozenset()
    free: frozenset[str] = frozenset()  # top-level names the Jinja template reads
    template: Any = None

    def render(self, ctx: Context) -> str:
        if self.parts is not None:
            return _render_fast(self.parts, ctx)
        return _render_jinja(self, ctx)


def _needs_work(text: str) -> bool:
    return "{{" in text or "{%" in text


def render_prompt(template: str, ctx: Context) -> str:
    """The prompt with every `{{ … }}` filled in; TemplateError if a name is undefined."""
    if not _needs_work(template):
        return normalize_newlines(template)
    return _compile(template, "prompt").render(ctx)


def render_shell(template: str, ctx: Context) -> str:
    """The command with every value quoted for the place it lands (`| raw` opts out)."""
    if not _needs_work(template):
        return normalize_newlines(template)
    return _compile(template, "shell").render(ctx)


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
    text = normalize_newlines(text)
    segs = segments(text)
    places: list[shellquote.Place] = []
    if kind == "shell":
        pieces = [""]
        for seg in segs:
            if seg.kind == EXPR:
                pieces.append("")
            elif seg.kind == TEXT:
                pieces[-1] += seg.text
        places = shellquote.places(pieces)
    fast = _fast_parts(segs, places, kind == "shell")
    if fast is not None:
        steps: set[str] = set()
        for part in fast:
            if not isinstance(part, str):
                steps |= steps_in_path(part[0])
        return _Compiled(text, fast, places=places, steps=frozenset(steps))
    source = _jinja_source(segs, kind == "shell")
    compiled = _Compiled(text, None, source, places)
    _jinja_compile(compiled)
    return compiled


def _fast_parts(
    segs: Sequence[Any], places: Sequence[shellquote.Place], shell: bool
) -> list[_Part] | None:
    parts: list[_Part] = []
    marker = 0
    for seg in segs:
        if seg.kind == TEXT:
            parts.append(seg.text)
            continue
        if seg.kind == BLOCK:
            return None
        found = simple_path(seg.text)
        if found is None:
            return None
        path, raw = found
        place = places[marker] if shell and not raw else None
        parts.append((path, place))
        marker += 1
    return parts


_JINJA_TRAPS = ("{{", "{%", "{#")


def _jinja_source(segs: Sequence[Any], shell: bool) -> str:
    out: list[str] = []
    marker = 0
    for seg in segs:
        if seg.kind == TEXT:
            text = seg.text
            if any(t in text for t in _JINJA_TRAPS) or text.endswith("{"):
                text = "{% raw %}" + text + "{% endraw %}"
            out.append(text)
        elif seg.kind == BLOCK:
            out.append("{%" + rewrite(seg.text[2:-2]) + "%}")
        else:
            expr = rewrite(seg.text)
            if shell and not has_raw_filter(expr):
                out.append(f"{{{{ _lok_q(({expr}), _lok_places[{marker}]) }}}}")
            else:
                out.append(f"{{{{ {expr} }}}}")
            marker += 1
    return "".join(out)


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


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


def _render_fast(parts: Sequence[_Part], ctx: Context) -> str:
    names = scope(ctx)
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        path, place = part
        text = to_text(_resolve(path, names))
        out.append(text if place is None else shellquote.quote(text, place))
    return "".join(out)


def _check_free(free: frozenset[str], names: dict[str, Any]) -> None:
    for name in sorted(free):
        if name not in names:
            raise unknown_name(name, names)


def _render_jinja(compiled: _Compiled, ctx: Context) -> str:
    names = scope(ctx)
    _check_free(compiled.free, names)
    names["_lok_places"] = compiled.places
    text: str = _guard(lambda: str(compiled.template.render(names)))
    return text


def _guard(call: Callable[[], Any]) -> Any:
    """Run a Jinja render or evaluation; its errors become TemplateErrors."""
    import jinja2

    try:
        return call()
    except TemplateError:
        raise
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template error: {exc.message or exc}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        raise TemplateError(f"template error: {exc}") from None


# ---------------------------------------------------------------------------
# Conditions and loop sources
# ---------------------------------------------------------------------------


def eval_condition(expr: str, ctx: Context) -> bool:
    """A `when` / `if` condition: the original's forms or a Jinja expression."""
    text = _unwrap(expr)
    if not text:
        return True  # an empty condition is no condition, as in the original
    node = parse_condition(text)
    names = scope(ctx)
    if node is not None:
        return node.evaluate(names["steps"])
    compiled = _expression(text, condition=True)
    _check_free(compiled.free, names)
    return bool(_guard(lambda: compiled.template(**names)))


def eval_for_each(expr: str, ctx: Context) -> list[Any]:
    """A `for_each` source's items: an inline JSON array, `steps.X.output`,
    `steps.X.FIELD`, or a Jinja expression that gives a list."""
    text = _unwrap(expr)
    if text.startswith("[") and not _wrapped(expr):
        return inline_array(text)
    names = scope(ctx)
    source = step_source(text)
    if source is not None:
        return items_from_step(names["steps"], *source)
    compiled = _expression(text, condition=False)
    _check_free(compiled.free, names)
    return items_from_value(_guard(lambda: compiled.template(**names)))


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
    node = parse_condition(text)
    if node is not None:
        return node.steps()
    return set(_expression(text, condition=True).steps)


def _for_each_refs(expr: str) -> set[str]:
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
    env = _environment()
    import jinja2

    source = rewrite(text, condition=condition)
    what = "condition" if condition else "for_each"
    try:
        ast = env.parse("{{ " + source + " }}")
        template = env.compile_expression(source, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        if condition:
            hint = (
                "write contains(STEP.output, 'text'), equals(STEP.FIELD, 'x'), not(…), "
                "steps.STEP.success, or a Jinja expression like "
                "steps.a.success and 'x' in steps.b.output"
            )
        else:
            hint = (
                "use 'steps.X.output', 'steps.X.FIELD', an inline JSON array, or a Jinja expression"
            )
        raise TemplateError(f"{what}: invalid format '{text}': {exc.message}", hint) from None
    compiled = _Compiled(text, None, source)
    compiled.template = template
    _analyse(compiled, ast)
    return compiled


# ---------------------------------------------------------------------------
# Jinja
# ---------------------------------------------------------------------------


def _jinja_compile(compiled: _Compiled) -> None:
    import jinja2

    env = _environment()
    try:
        ast = env.parse(compiled.source)
        compiled.template = env.from_string(ast)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"template does not compile: {exc.message} (line {exc.lineno})",
            "check the {{ … }} and {% … %} syntax; {% raw %}…{% endraw %} keeps text literal",
        ) from None
    _analyse(compiled, ast)


def _analyse(compiled: _Compiled, ast: Any) -> None:
    """Record the free top-level names and the steps a Jinja AST reads."""
    from jinja2 import meta, nodes

    env = _environment()
    free = meta.find_undeclared_variables(ast) - set(env.globals) - {"_lok_places"}
    steps: set[str] = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == "steps"):
            continue
        if isinstance(node, nodes.Getattr):
            steps.add(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            steps.add(node.arg.value)
    compiled.free = frozenset(free)
    compiled.steps = frozenset(steps)


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    def undefined_error(message: str) -> TemplateError:
        return TemplateError(f"undefined: {message}")

    class LokUndefined(jinja2.StrictUndefined):
        """Undefined whose error is lok's TemplateError (with its hint, when lok made it)."""

        __slots__ = ()

        def __init__(
            self,
            hint: str | None = None,
            obj: Any = jinja2.utils.missing,
            name: str | None = None,
            exc: Any = undefined_error,
        ) -> None:
            super().__init__(hint, obj, name, exc)

    def _wrap(value: Any, obj: Any, key: Any) -> Any:
        if isinstance(value, Missing):
            error = functools.partial(TemplateError, hint=value.hint)
            return LokUndefined(hint=value.message, obj=obj, name=key, exc=error)
        return value

    class LokEnvironment(jinja2.Environment):
        def getattr(self, obj: Any, attribute: str) -> Any:
            if isinstance(obj, jinja2.Undefined):
                return super().getattr(obj, attribute)
            return _wrap(lookup(obj, attribute), obj, attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            if isinstance(obj, jinja2.Undefined) or not isinstance(argument, (str, int)):
                return super().getitem(obj, argument)
            if isinstance(argument, bool):
                return super().getitem(obj, argument)
            return _wrap(lookup(obj, argument), obj, argument)

    env = LokEnvironment(
        undefined=LokUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=to_text,
        auto_reload=False,
        cache_size=0,
    )
    env.filters.update(
        raw=lambda value: value,
        json=to_json,
        fromjson=_fromjson,
        lines=lambda value: to_text(value).splitlines(),
        shquote=lambda value: shellquote.quote(to_text(value), shellquote.BARE_PLACE),
    )
    env.globals.update(
        contains=contains,
        equals=equals,
        _lok_q=lambda value, place: shellquote.quote(to_text(value), place),
    )
    return env


def _fromjson(value: Any) -> Any:
    from lokfile.outputs import MISSING, json_anywhere

    parsed = json_anywhere(to_text(value))
    if parsed is MISSING:
        raise TemplateError("fromjson: the text holds no JSON", "check the step's output")
    return parsed
