"""The names a template sees, and how their values read and render.

Both renderers (the fast path for plain `{{ a.b.c }}` templates and the Jinja
path) and the condition evaluator resolve names through `lookup()` and turn
values into text with `to_text()`, so they agree by construction. Nothing here
imports jinja2.

    steps.X            a step (renders as its output)
    steps.X.output     raw output text; `.FIELD` on it reads a JSON field
    steps.X.success    false for a failed or skipped step
    steps.X.error / .backend / .parsed / .skipped
    steps.X.FIELD      JSON field: the parsed value's, else the first JSON object in
                       the output text. The attributes above win over fields of the
                       same name; `steps.X.output.error` reaches such a field.
    arg.1, arg.NAME    positional (1-based) and named workflow arguments (`args` too)
    env.VAR            environment variables
    workflow.name, workflow.backends
    item, index        the loop item and its 0-based index (for_each steps only)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lokfile.errors import TemplateError


class _NoItem:
    def __repr__(self) -> str:
        return "NO_ITEM"


NO_ITEM: Any = _NoItem()

TOP_NAMES = ("steps", "arg", "args", "env", "workflow", "item", "index")
STEP_ATTRS = ("output", "success", "error", "backend", "parsed", "skipped")


@dataclass(frozen=True)
class StepView:
    """What templates see of a finished (or skipped) step."""

    output: str  # raw output ("" when skipped; the error text when it failed softly)
    success: bool
    error: str | None = None
    backend: str | None = None
    parsed: Any = None  # output_format-parsed value (json/json_array/jsonl/lines), else None
    skipped: bool = False


@dataclass(frozen=True)
class Context:
    """Everything a template, condition or loop source can read."""

    steps: Mapping[str, StepView]
    args: Sequence[str] = ()  # positional workflow args; {{ arg.1 }} is args[0]
    named_args: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    item: Any = NO_ITEM  # the loop item (NO_ITEM outside for_each)
    index: int | None = None
    workflow_name: str = ""
    workflow_backends: str = "lok"


_ABSENT: Any = object()


class Missing:
    """A name that does not resolve: the error it becomes when a template uses it."""

    __slots__ = ("hint", "message")

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint

    def __repr__(self) -> str:
        return f"Missing({self.message!r})"

    def error(self) -> TemplateError:
        """The TemplateError to raise."""
        return TemplateError(self.message, self.hint)


def one_line(text: str, limit: int = 120) -> str:
    """`text` fit for a one-line message: newlines shown as ⏎, cut to `limit` characters."""
    text = text.replace("\r\n", "\n").replace("\n", "⏎")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _close(word: str, choices: Sequence[str]) -> str:
    import difflib

    found = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(repr(c) for c in found)}? " if found else ""


def _listing(names: Sequence[str], empty: str) -> str:
    shown = ", ".join(names[:12]) + (", …" if len(names) > 12 else "")
    return shown or empty


class Namespace:
    """Base of the objects behind `steps`, `arg`, `env`, `workflow`."""

    path = ""

    def lok_get(self, key: str | int) -> Any:
        """The value behind `self.key`, or a Missing."""
        raise NotImplementedError


class Steps(Namespace):
    """`steps`: the steps this template may read."""

    path = "steps"

    def __init__(self, views: Mapping[str, StepView]) -> None:
        self._views = views

    def lok_get(self, key: str | int) -> Any:
        view = self._views.get(str(key))
        if view is None:
            names = sorted(self._views)
            return Missing(
                f"no step '{key}' is visible here",
                f"{_close(str(key), names)}steps this one can read: "
                f"{_listing(names, 'none')}; a step must be in depends_on to be read",
            )
        return StepRef(str(key), view)

    def __iter__(self) -> Iterator[str]:
        return iter(self._views)

    def __contains__(self, name: object) -> bool:
        return name in self._views

    def __len__(self) -> int:
        return len(self._views)


class StepRef(Namespace):
    """`steps.X`: one step's result."""

    def __init__(self, name: str, view: StepView) -> None:
        self.name = name
        self.view = view
        self.path = f"steps.{name}"

    def lok_get(self, key: str | int) -> Any:
        view = self.view
        if key == "output":
            return OutputText(view.output, self)
        if key == "success":
            return view.success and not view.skipped
        if key in STEP_ATTRS:
            return getattr(view, str(key))
        return self.field(key)

    def field(self, key: str | int) -> Any:
        """A JSON field of the output: parsed value first, else found in the text."""
        view = self.view
        if view.parsed is not None:
            value = _element(view.parsed, key)
        elif isinstance(key, int):
            value = _ABSENT
        else:
            from lokfile.outputs import MISSING, json_field

            value = json_field(view.output, key)
            if value is MISSING:
                value = _ABSENT
        if value is not _ABSENT:
            return value
        if view.skipped:
            return Missing(
                f"step '{self.name}' was skipped (its condition was false), "
                f"so it has no field '{key}'",
                f"test steps.{self.name}.success first, or give the field a default: "
                f"{{{{ steps.{self.name}.{key} | default('') }}}}",
            )
        return Missing(
            f"step '{self.name}' output has no JSON field '{key}'", self._fields_hint(key)
        )

    def _fields_hint(self, key: str | int) -> str:
        view = self.view
        from lokfile.outputs import MISSING, json_anywhere

        parsed = view.parsed
        if parsed is None:
            parsed = json_anywhere(view.output)
        if isinstance(parsed, dict):
            names = [str(k) for k in parsed]
            return f"{_close(str(key), names)}its fields: {_listing(names, 'none')}"
        if parsed is MISSING:
            return 'its output holds no JSON object; ask for JSON, or set output_format = "json"'
        return (
            f"its output is {_JSON_KINDS.get(type(parsed), 'a JSON value')}, not an object; "
            f"{_close(str(key), STEP_ATTRS)}step attributes: {', '.join(STEP_ATTRS)}"
        )


_JSON_KINDS = {list: "a JSON array", str: "a JSON string", int: "a number", float: "a number"}


class OutputText(str):
    """A step's output text; `.FIELD` on it reads a JSON field (the original's form)."""

    step: StepRef

    def __new__(cls, text: str, step: StepRef) -> OutputText:
        self = super().__new__(cls, text)
        self.step = step
        return self

    def lok_get(self, key: str | int) -> Any:
        """A JSON field, then a str method (so `.strip()` still works)."""
        value = self.step.field(key)
        if not isinstance(value, Missing):
            return value
        if isinstance(key, str) and not key.startswith("_") and hasattr(str, key):
            return getattr(str(self), key)
        if isinstance(key, int):
            return _element(str(self), key, value)
        return value


class Args(Namespace):
    """`arg` / `args`: positional (1-based) and named workflow arguments."""

    path = "arg"

    def __init__(self, positional: Sequence[str], named: Mapping[str, str]) -> None:
        self._positional = positional
        self._named = named

    def lok_get(self, key: str | int) -> Any:
        if isinstance(key, str) and key.isdigit():
            key = int(key)
        if isinstance(key, int):
            count = len(self._positional)
            if key < 1:
                return Missing(f"arg.{key} does not exist", "positional arguments count from 1")
            if key > count:
                return Missing(
                    f"positional argument {key} was not given (this run has {count})",
                    "pass it after the workflow name: lok run WORKFLOW ARG1 ARG2 …",
                )
            return self._positional[key - 1]
        if key in self._named:
            return self._named[key]
        names = sorted(self._named)
        return Missing(
            f"argument '{key}' was not given",
            f"{_close(key, names)}named arguments of this run: {_listing(names, 'none')}; "
            f"declare it with a default under [args.{key}]",
        )

    def __contains__(self, key: object) -> bool:
        return key in self._named


class Env(Namespace):
    """`env`: the environment."""

    path = "env"

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def lok_get(self, key: str | int) -> Any:
        value = self._env.get(str(key))
        if value is None:
            return Missing(
                f"environment variable '{key}' is not set",
                f"{_close(str(key), sorted(self._env))}set it, or write "
                f"{{{{ env.{key} | default('') }}}}",
            )
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._env


class WorkflowInfo(Namespace):
    """`workflow`: `.name` and `.backends`; renders as the name."""

    path = "workflow"

    def __init__(self, name: str, backends: str) -> None:
        self.name = name
        self.backends = backends

    def lok_get(self, key: str | int) -> Any:
        if key == "name":
            return self.name
        if key == "backends":
            return self.backends
        return Missing(
            f"workflow has no attribute '{key}'", "use workflow.name or workflow.backends"
        )


def scope(ctx: Context) -> dict[str, Any]:
    """The top-level names of a template rendered against `ctx`."""
    args = Args(ctx.args, ctx.named_args)
    names: dict[str, Any] = {
        "steps": Steps(ctx.steps),
        "arg": args,
        "args": args,
        "env": Env(ctx.env),
        "workflow": WorkflowInfo(ctx.workflow_name, ctx.workflow_backends),
    }
    if ctx.item is not NO_ITEM:
        names["item"] = ctx.item
        names["index"] = ctx.index
    elif ctx.index is not None:
        names["index"] = ctx.index
    return names


def unknown_name(name: str, names: Mapping[str, Any]) -> TemplateError:
    """The error for a top-level name that is not defined."""
    if name in ("item", "index"):
        return TemplateError(
            f"'{name}' is only defined in a for_each step",
            "add for_each to this step, or remove it",
        )
    known = sorted(names)
    return TemplateError(
        f"undefined name '{name}'",
        f"{_close(name, known)}names a template can use: {', '.join(known)}",
    )


def _element(container: Any, key: str | int, missing: Any = _ABSENT) -> Any:
    if isinstance(container, dict):
        return container.get(str(key), missing)
    if isinstance(container, (list, tuple, str)) and isinstance(key, int):
        try:
            return container[key]
        except IndexError:
            return missing
    return missing


def lookup(obj: Any, key: str | int) -> Any:
    """`obj.key` (or `obj[key]`) as templates see it; a Missing when it does not exist."""
    if isinstance(obj, (Namespace, OutputText)):
        return obj.lok_get(key)
    if isinstance(obj, dict):
        value = _element(obj, key)
        if value is not _ABSENT:
            return value
        if isinstance(key, str) and not key.startswith("_") and hasattr(dict, key):
            return getattr(obj, key)
        names = [str(k) for k in obj]
        return Missing(
            f"the object has no field '{key}'",
            f"{_close(str(key), names)}its fields: {_listing(names, 'none')}",
        )
    if isinstance(key, int) and isinstance(obj, (list, tuple, str)):
        value = _element(obj, key)
        if value is _ABSENT:
            return Missing(f"index {key} is out of range (length {len(obj)})")
        return value
    if isinstance(key, str) and not key.startswith("_"):
        try:
            return getattr(obj, key)
        except AttributeError:
            pass
    return Missing(f"{_describe(obj)} has no attribute '{key}'")


def _describe(obj: Any) -> str:
    if isinstance(obj, str):
        return "a string"
    if obj is None:
        return "null"
    return f"a {type(obj).__name__} value"


def _json_default(value: Any) -> Any:
    if isinstance(value, StepRef):
        return value.view.output
    if isinstance(value, WorkflowInfo):
        return value.name
    raise TypeError(f"{_describe(value)} cannot be written as JSON")


def to_json(value: Any) -> str:
    """Compact JSON, non-ASCII kept as is: `{"name":"tests"}`."""
    import json

    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def to_text(value: Any) -> str:
    """How a value renders: strings raw; bools true/false; numbers as JSON; null; lists
    and objects as compact JSON; a step as its output; the workflow as its name."""
    if isinstance(value, str):
        return str(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        import json

        return json.dumps(value)
    if isinstance(value, (dict, list, tuple)):
        try:
            return to_json(value)
        except (TypeError, ValueError) as exc:
            raise TemplateError(f"cannot render the value: {exc}") from None
    if isinstance(value, StepRef):
        return value.view.output
    if isinstance(value, WorkflowInfo):
        return value.name
    if isinstance(value, Namespace):
        raise TemplateError(
            f"'{value.path}' is a namespace, not a value",
            "name what you want: steps.NAME.output, arg.1, env.VAR, workflow.name",
        )
    fail = getattr(type(value), "_fail_with_undefined_error", None)
    if fail is not None:  # a jinja2 Undefined: raises the error it carries
        fail(value)
    if callable(value):
        raise TemplateError("a template renders a method or function", "call it with ()")
    return str(value)


def condition_text(value: Any) -> str | None:
    """The text contains()/equals() compare: None for a missing field, "" for null."""
    if isinstance(value, Missing) or getattr(type(value), "_fail_with_undefined_error", None):
        return None
    if value is None:
        return ""
    return to_text(value)


def contains(value: Any, needle: Any) -> bool:
    """The original's contains(X.field, 'text'): substring test; a missing field is false."""
    text = condition_text(value)
    return text is not None and to_text(needle) in text


def equals(value: Any, expected: Any) -> bool:
    """The original's equals(X.field, 'text'): an output is trimmed first, a field is not."""
    text = condition_text(value)
    if text is None:
        return False
    if isinstance(value, OutputText):
        text = text.strip()
    return text == to_text(expected)
