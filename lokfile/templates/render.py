"""Templates: prompts, shell commands, conditions and loop sources. The only jinja2 user.

Jinja2 with undefined names as errors, plus the original's forms (see
`template_scope` for the names, `template_source` for the rewriting,
`conditions` for `when` and `for_each`). Shell commands quote every value for
the place it lands (see `shellquote`); `{{ x | raw }}` opts out.

Three renderers give the same text (a hypothesis test holds them to it):
a template without `{{`/`{%` is returned as is; one made only of plain dotted
names (`{{ steps.a.output }}`, `{{ arg.1 }}`) is rendered by a small loop here;
everything else goes through Jinja, which is imported on first use only.
Compiled templates are cached by text. Only this module, `template_scope` and
`outputs` load with `import lokfile.templates.render`; the rest loads when needed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
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
    contains,
    equals,
    lookup,
    one_line,
    scope,
    to_json,
    to_text,
    unknown_name,
)

if TYPE_CHECKING:
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
    _jinja_compile(compiled)
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


def _refused(name: str, exc: TemplateError) -> TemplateError:
    """A value shellquote refused, named as the template wrote it."""
    return TemplateError(f"the value of {{{{ {name} }}}} {exc.message}", exc.hint)


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
            raise _refused(_dotted(part.path), exc) from None
    return "".join(out)


def _check_free(free: frozenset[str], names: dict[str, Any]) -> None:
    for name in sorted(free):
        if name not in names:
            raise unknown_name(name, names)


def _render_jinja(compiled: _Compiled, ctx: Context) -> str:
    names = scope(ctx)
    _check_free(compiled.free, names)
    names["_lok_places"] = compiled.places
    names["_lok_names"] = compiled.names
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
        raise TemplateError(f"template error: {one_line(exc.message or str(exc))}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        raise TemplateError(
            f"template error: {one_line(str(exc))}",
            "check the types in the expression: | int, | string and | json convert values",
        ) from None


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
    return bool(_guard(lambda: compiled.template(**names)))


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
    import jinja2

    from lokfile.templates.source import rewrite

    env = _environment()
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
        message = f"invalid format '{one_line(text)}': {one_line(exc.message or '')}"
        raise TemplateError(f"{what}: {message}", hint) from None
    compiled = _Compiled(None, source)
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
            f"template does not compile: {one_line(exc.message or '')} (line {exc.lineno})",
            "check the {{ … }} and {% … %} syntax; {% raw %}…{% endraw %} keeps text literal",
        ) from None
    _analyse(compiled, ast)


def _analyse(compiled: _Compiled, ast: Any) -> None:
    """Record the free top-level names and the steps a Jinja AST reads."""
    from jinja2 import meta, nodes

    env = _environment()
    free = meta.find_undeclared_variables(ast) - set(env.globals) - {"_lok_places", "_lok_names"}
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
    compiled.needs = _positional_at_top(ast)


def _positional_at_top(ast: Any) -> int:
    """The highest `arg[N]` printed as is at the top level of a template (see
    positional_needed): only what renders whatever the context counts."""
    from jinja2 import nodes

    needs = 0
    for output in ast.body if isinstance(ast, nodes.Template) else ():
        if not isinstance(output, nodes.Output):
            continue
        for expr in output.nodes:
            if (
                isinstance(expr, nodes.Call)
                and isinstance(expr.node, nodes.Name)
                and expr.node.name == "_lok_q"
                and expr.args
            ):
                expr = expr.args[0]  # a shell value, quoted for its place
            if (
                isinstance(expr, nodes.Getitem)
                and isinstance(expr.node, nodes.Name)
                and expr.node.name in ("arg", "args")
                and isinstance(expr.arg, nodes.Const)
                and type(expr.arg.value) is int
            ):
                needs = max(needs, expr.arg.value)
    return needs


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    from lokfile.templates.shellquote import BARE_PLACE, quote

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
        shquote=lambda value: quote(to_text(value), BARE_PLACE),
    )

    @jinja2.pass_context
    def quote_marker(context: Any, value: Any, place: Place, marker: int) -> str:
        text = to_text(value)
        try:
            return quote(text, place)
        except TemplateError as exc:
            raise _refused(context["_lok_names"][marker], exc) from None

    env.globals.update(contains=contains, equals=equals, _lok_q=quote_marker)
    return env


def _fromjson(value: Any) -> Any:
    from lokfile.outputs import MISSING, json_anywhere

    parsed = json_anywhere(to_text(value))
    if parsed is MISSING:
        raise TemplateError("fromjson: the text holds no JSON", "check the step's output")
    return parsed
