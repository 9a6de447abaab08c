"""The Jinja side of templates: lok's environment, compiling, and what a template reads.

The only module that imports jinja2, and itself imported only when a template
needs Jinja (`render` takes plain `{{ dotted.names }}` without it). Undefined
names are lok's TemplateError, with the hint `scope` gives; attribute and item
access go through `scope.lookup`, so a value reads the same on both paths.

    compile_template(source)      a whole template (its source already rewritten)
    compile_expression(…)         a `when` condition or a `for_each` source
    guard(call)                   a render or evaluation, its errors as TemplateErrors

Each compile returns `Code`: the Jinja object plus what the analysis found (the
free top-level names, the steps read, the highest `arg.N` always printed).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jinja2
from jinja2 import meta, nodes

from lokfile.errors import TemplateError
from lokfile.outputs import MISSING, json_anywhere
from lokfile.templates.scope import Missing, contains, equals, lookup, one_line, to_json, to_text
from lokfile.templates.shellplace import Place
from lokfile.templates.shellquote import BARE_PLACE, named_refusal, quote

# names lok's own generated source passes in, not names a template reads
_INTERNAL = frozenset({"_lok_places", "_lok_names"})


class Code:
    """A compiled template or expression, and what it reads."""

    __slots__ = ("free", "needs", "steps", "template")

    def __init__(self, template: Any, tree: nodes.Template) -> None:
        self.template = template
        self.free, self.steps = _reads(tree)
        self.needs = _positional_at_top(tree)


def compile_template(source: str) -> Code:
    """Compile a template's Jinja source (as `source.rewrite` made it)."""
    env = _environment()
    try:
        tree = env.parse(source)
        return Code(env.from_string(tree), tree)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"template does not compile: {one_line(exc.message or '')} (line {exc.lineno})",
            "check the {{ … }} and {% … %} syntax; {% raw %}…{% endraw %} keeps text literal",
        ) from None


def compile_expression(source: str, text: str, condition: bool) -> Code:
    """Compile a condition (`condition`) or loop source's Jinja expression; `text` is
    what the workflow wrote, for the message if it does not compile."""
    env = _environment()
    what = "condition" if condition else "for_each"
    try:
        tree = env.parse("{{ " + source + " }}")
        return Code(env.compile_expression(source, undefined_to_none=False), tree)
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


def guard(call: Callable[[], Any]) -> Any:
    """Run a Jinja render or evaluation; its errors become TemplateErrors."""
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


def _reads(tree: nodes.Template) -> tuple[frozenset[str], frozenset[str]]:
    """The free top-level names and the steps a Jinja AST reads."""
    env = _environment()
    free = meta.find_undeclared_variables(tree) - set(env.globals) - _INTERNAL
    steps = {get.attr for get in tree.find_all(nodes.Getattr) if _is_steps(get.node)}
    for item in tree.find_all(nodes.Getitem):
        key = item.arg
        if _is_steps(item.node) and isinstance(key, nodes.Const) and isinstance(key.value, str):
            steps.add(key.value)
    return frozenset(free), frozenset(steps)


def _is_steps(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "steps"


def _positional_at_top(tree: nodes.Template) -> int:
    """The highest `arg[N]` printed as is at the top level of a template (see
    render.positional_needed): only what renders whatever the context counts."""
    needs = 0
    for output in tree.body:
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


def _undefined_error(message: str) -> TemplateError:
    return TemplateError(f"undefined: {message}")


class _LokUndefined(jinja2.StrictUndefined):
    """Undefined whose error is lok's TemplateError (with its hint, when lok made it)."""

    __slots__ = ()

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = jinja2.utils.missing,
        name: str | None = None,
        exc: Any = _undefined_error,
    ) -> None:
        super().__init__(hint, obj, name, exc)


def _wrap(value: Any, obj: Any, key: Any) -> Any:
    if isinstance(value, Missing):
        error = functools.partial(TemplateError, hint=value.hint)
        return _LokUndefined(hint=value.message, obj=obj, name=key, exc=error)
    return value


class _LokEnvironment(jinja2.Environment):
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


@jinja2.pass_context
def _quote_marker(context: Any, value: Any, place: Place, marker: int) -> str:
    text = to_text(value)
    try:
        return quote(text, place)
    except TemplateError as exc:
        raise named_refusal(context["_lok_names"][marker], exc) from None


def _fromjson(value: Any) -> Any:
    parsed = json_anywhere(to_text(value))
    if parsed is MISSING:
        raise TemplateError("fromjson: the text holds no JSON", "check the step's output")
    return parsed


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = _LokEnvironment(
        undefined=_LokUndefined,
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
    env.globals.update(contains=contains, equals=equals, _lok_q=_quote_marker)
    return env
