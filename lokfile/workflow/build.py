"""Raw workflow tables → a validated `Workflow`, collecting every problem at once.

`loader` reads files and merges `extends`; this module turns the merged draft
into model values and checks it, every problem at once: unknown keys, types, the step
graph, backends, templates. Each problem names the file and line of the key
at fault, and a hint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lokfile import tomlfile
from lokfile.errors import Problem, TemplateError
from lokfile.model import DEFAULT_STEP_TIMEOUT_MS, ArgSpec, Config, Step, StepKind, Workflow
from lokfile.tomlfile import BadValue, did_you_mean
from lokfile.workflow import graph as wfgraph
from lokfile.workflow.draft import (
    ARG_KEYS,
    STEP_KEYS,
    TEMPLATED,
    WORKFLOW_KEYS,
    Draft,
    DraftStep,
    Source,
    type_hint,
    unknown_key,
)

AUTO = "auto"  # resolved by the engine at run time to an available backend


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------


class _Checker:
    def __init__(self, draft: Draft, config: Config) -> None:
        self.draft = draft
        self.config = config
        self.problems: list[Problem] = []

    def at(self, source: Source, line: int | None, message: str, hint: str | None) -> None:
        """Record a problem at `source`:`line`."""
        self.problems.append(Problem(message, source.label, line, hint))

    def top(self, key: str, default: Any = None) -> Any:
        """A workflow-level value, converted, or `default` (problems recorded)."""
        entry = self.draft.top.get(key)
        if entry is None:
            return default
        value, source = entry
        try:
            return WORKFLOW_KEYS[key](value)
        except BadValue as exc:
            self.at(source, source.line((key,)), exc.message(key), type_hint(key, exc))
            return default


def build(draft: Draft, config: Config) -> tuple[Workflow | None, list[Problem]]:
    """The checked workflow, or None and every problem found."""
    c = _Checker(draft, config)
    c.problems.extend(draft.problems)
    name = c.top("name")
    timeout = c.top("timeout")
    source = draft.top.get("timeout", (None, draft.source))[1]
    if timeout is not None and 0 < timeout < 100:
        c.at(
            source,
            source.line(("timeout",)),
            f"workflow timeout ({timeout}ms) is below the minimum (100ms)",
            'timeouts are milliseconds: write 30000 or "30s"; 0 means no timeout',
        )
    backend = c.top("backend")
    if backend is not None:
        where = draft.top["backend"][1]
        _check_backend_name(c, backend, where, where.line(("backend",)), "the workflow")
    defaults = _WorkflowDefaults(
        continue_on_error=c.top("continue_on_error", False),
        timeout_ms=timeout,
        backend=backend or config.defaults.backend,
        sources=c.top("sources", ()),
        env=c.top("env", ()),
    )
    args = _args(c)
    description = c.top("description", "")
    concurrency = c.top("concurrency")
    if not draft.steps and not draft.problems:
        c.at(
            draft.source,
            None,
            "workflow has no steps",
            'add a step: [[steps]] with name = "..." and shell = "..." or prompt = "..."',
        )
    steps = [_step(c, ds, defaults) for ds in draft.steps]
    _check_graph(c, steps)
    name = name or "?"
    if c.problems:
        return None, sorted(c.problems, key=lambda p: (p.file or "", p.line or 0))
    return Workflow(
        name=name,
        steps=tuple(s.step for s in steps if s.step is not None),
        description=description,
        path=str(draft.source.path) if draft.source.path else None,
        origin=draft.source.origin,
        files=tuple(draft.files),
        continue_on_error=defaults.continue_on_error,
        timeout_ms=timeout,
        backend=backend,
        sources=defaults.sources,
        env=defaults.env,
        args=args,
        concurrency=concurrency,
    ), []


@dataclass(frozen=True)
class _WorkflowDefaults:
    continue_on_error: bool
    timeout_ms: int | None
    backend: str | None
    sources: tuple[str, ...]
    env: tuple[str, ...]


def _args(c: _Checker) -> tuple[ArgSpec, ...]:
    entry = c.draft.top.get("args")
    if entry is None:
        return ()
    raw, source = entry
    if not isinstance(raw, dict):
        c.at(
            source,
            source.line(("args",)),
            f"args must be a table, got {tomlfile.describe(raw)}",
            '[args.NAME] tables with default = "..." and description = "...", '
            'or args = { NAME = "default" }',
        )
        return ()
    out = []
    for name, spec in raw.items():
        line = source.line(("args", name))
        if not isinstance(spec, dict):
            # shorthand: `args = { base = "main" }` gives a default
            if isinstance(spec, (str, int, float, bool)):
                out.append(ArgSpec(name=name, default=_arg_text(spec)))
            else:
                c.at(
                    source,
                    line,
                    f"args.{name} must be a table or a default value",
                    f'write [args.{name}] with default = "..." and description = "..."',
                )
            continue
        for key in spec:
            if key not in ARG_KEYS:
                message, hint = unknown_key(key, ARG_KEYS, f"in [args.{name}]")
                c.at(source, source.line(("args", name, key)), message, hint)
        default = spec.get("default")
        description = spec.get("description", "")
        required = spec.get("required", False)
        if default is not None and not isinstance(default, (str, int, float, bool)):
            c.at(
                source,
                source.line(("args", name, "default")),
                f"args.{name}.default must be a string, got {tomlfile.describe(default)}",
                'for example: default = "main"',
            )
            default = None
        if not isinstance(description, str) or not isinstance(required, bool):
            c.at(
                source,
                line,
                f"args.{name}: description must be a string and required true or false",
                'for example: description = "the branch to compare", required = true',
            )
            continue
        out.append(
            ArgSpec(name, None if default is None else _arg_text(default), description, required)
        )
    return tuple(out)


def _arg_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------


@dataclass
class _Built:
    draft: DraftStep
    name: str | None
    depends_on: tuple[str, ...]
    refs: list[tuple[str, str]]  # (key, step name it reads)
    step: Step | None


def _step(c: _Checker, ds: DraftStep, defaults: _WorkflowDefaults) -> _Built:
    table, source = ds.table, ds.source
    raw_name = table.get("name")
    label = f"step '{raw_name}'" if isinstance(raw_name, str) else f"step #{ds.index + 1}"
    values: dict[str, Any] = {}
    ok = True
    for key, value in table.items():
        check = STEP_KEYS.get(key)
        if check is None:
            message, hint = unknown_key(key, STEP_KEYS, f"in {label}")
            c.at(source, ds.key_line(key), message, hint)
            ok = False
            continue
        try:
            values[key] = check(value)
        except BadValue as exc:
            c.at(source, ds.key_line(key), f"{label}: {exc.message(key)}", type_hint(key, exc))
            ok = False
    name = values.get("name")
    if "name" not in table:
        c.at(source, ds.line, f"{label} has no name", 'add name = "..." (unique in the workflow)')
        ok = False
    shell, prompt = values.get("shell"), values.get("prompt")
    if shell is not None and prompt is not None:
        c.at(
            source,
            ds.key_line("prompt"),
            f"{label} has both shell and prompt",
            "a step either runs a command (shell) or asks a backend (prompt): split it in two",
        )
        ok = False
    elif shell is None and prompt is None and "shell" not in table and "prompt" not in table:
        c.at(
            source,
            ds.line,
            f"{label} has neither shell nor prompt",
            'add shell = "command" to run a command, or prompt = "..." to ask a backend',
        )
        ok = False
    if "when" in table and "if" in table:
        c.at(
            source,
            ds.key_line("if"),
            f"{label} sets both when and if",
            "they mean the same thing (if is an alias of when): keep one",
        )
        ok = False
    min_deps = values.get("min_deps_success")
    deps = values.get("depends_on", ())
    if min_deps is not None and min_deps > len(deps):
        c.at(
            source,
            ds.key_line("min_deps_success"),
            f"{label} has min_deps_success ({min_deps}) exceeding number of dependencies "
            f"({len(deps)})",
            "lower min_deps_success, or add steps to depends_on",
        )
        ok = False
    timeout: int | None = values.get("timeout", defaults.timeout_ms)
    if "timeout" in values and timeout is not None and 0 < timeout < 100:
        c.at(
            source,
            ds.key_line("timeout"),
            f"{label} has timeout ({timeout}ms) below minimum (100ms)",
            'timeouts are milliseconds: write 30000 or "30s"; 0 means no timeout',
        )
        ok = False
    kind = StepKind.SHELL if shell is not None else StepKind.LLM
    backends: tuple[str, ...] = ()
    if kind is StepKind.LLM and prompt is not None:
        backends = _step_backends(c, ds, values, defaults, label)
        ok = ok and bool(backends)
    ok = _samples_fit(c, ds, values, label, len(backends)) and ok
    refs = _references(c, ds, values, label)
    if not ok or refs is None or name is None:
        return _Built(ds, name, deps, refs or [], None)
    step = Step(
        name=name,
        kind=kind,
        prompt=prompt,
        shell=shell,
        backends=backends,
        depends_on=deps,
        when=values.get("when", values.get("if")),
        for_each=values.get("for_each"),
        output_format=values.get("output_format", "text"),
        retries=values.get("retries", 0),
        retry_delay_ms=values.get("retry_delay", 1000),
        timeout_ms=DEFAULT_STEP_TIMEOUT_MS if timeout is None else timeout,
        continue_on_error=values.get("continue_on_error", defaults.continue_on_error),
        min_deps_success=min_deps,
        consensus=values.get("consensus", "synthesis"),
        apply_edits=values.get("apply_edits", False),
        verify=values.get("verify"),
        fix_retries=values.get("fix_retries", 0),
        sources=_joined(defaults.sources, values.get("sources", ())),
        env=_joined(defaults.env, values.get("env", ())),
        cache=values.get("cache"),
        outputs=values.get("outputs", ()),
        model=values.get("model"),
        system=values.get("system"),
        temperature=values.get("temperature"),
        seed=values.get("seed"),
        max_tokens=values.get("max_tokens"),
        samples=values.get("samples", 1),
        line=ds.line,
    )
    return _Built(ds, name, deps, refs, step)


def _samples_fit(
    c: _Checker, ds: DraftStep, values: dict[str, Any], label: str, backends: int
) -> bool:
    """`samples = N` asks one backend N times with one prompt; say what it cannot go with."""
    if values.get("samples", 1) == 1:
        return True
    clash = next(
        (
            why
            for key, why in (
                ("shell", "a shell step runs its command once"),
                ("for_each", "each loop item is asked once"),
                ("apply_edits", "one answer edits the files"),
                ("verify", "one answer is verified"),
            )
            if values.get(key)
        ),
        "several backends each answer once" if backends > 1 else None,
    )
    if clash is None:
        return True
    c.at(
        ds.source,
        ds.key_line("samples"),
        f"{label}: samples asks one backend several times, but {clash}",
        "remove samples, or move it to its own step with one backend and a prompt",
    )
    return False


def _joined(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    if not first:
        return second
    return first + tuple(x for x in second if x not in first)


def _step_backends(
    c: _Checker, ds: DraftStep, values: dict[str, Any], defaults: _WorkflowDefaults, label: str
) -> tuple[str, ...]:
    if any(key in ds.table and key not in values for key in ("backend", "backends")):
        return ()  # its type problem was reported already
    # as the original: a non-empty `backends` wins, then `backend` (a comma list)
    given = [n.strip() for n in values.get("backends", ())]
    key = "backends"
    if not any(given):
        key, given = "backend", [n.strip() for n in values.get("backend", "").split(",")]
    names = list(dict.fromkeys(n for n in given if n))
    if not names and defaults.backend:
        return (defaults.backend,)
    if not names:
        c.at(
            ds.source,
            ds.line,
            f"{label} has no backend, and there is no default",
            'add backend = "NAME" to the step, backend = "..." to the workflow, '
            'or [defaults] backend = "auto" to lok.toml',
        )
        return ()
    ok = True
    for name in names:
        ok = _check_backend_name(c, name, ds.source, ds.key_line(key), label) and ok
    return tuple(names) if ok else ()


def _check_backend_name(
    c: _Checker, name: str, source: Source, line: int | None, label: str
) -> bool:
    if name == AUTO or name in c.config.backends:
        return True
    known = sorted(c.config.backends)
    close = did_you_mean(name, known)
    message = f"{label} uses backend '{name}', which is not configured" + (
        f" (did you mean '{close}'?)" if close else ""
    )
    c.at(
        source,
        line,
        message,
        f'configured backends: {", ".join(known) or "none"}, or "auto"; '
        f"or add [backends.{name}] to lok.toml",
    )
    return False


def _references(
    c: _Checker, ds: DraftStep, values: dict[str, Any], label: str
) -> list[tuple[str, str]] | None:
    """(key, step name) pairs the step's templates read; None if one does not compile."""
    texts: list[tuple[str, str, str]] = []
    for key, kind in TEMPLATED:
        text = values.get(key)
        if isinstance(text, str) and ("{{" in text or "{%" in text):
            texts.append((key, kind, text))
    condition_key = "when" if "when" in values else "if"
    if isinstance(values.get(condition_key), str):
        texts.append((condition_key, "condition", values[condition_key]))
    if isinstance(values.get("for_each"), str):
        texts.append(("for_each", "for_each", values["for_each"]))
    if not texts:
        return []
    from lokfile.templates import render as templates

    refs: list[tuple[str, str]] = []
    ok = True
    allowed = set(templates.TOP_NAMES)
    if "for_each" in ds.table:  # even a for_each of the wrong type (that has its own problem)
        allowed |= set(templates.LOOP_NAMES)
    for key, kind, text in texts:
        try:
            names = templates.references(text, kind)
            read = templates.names_read(text, kind)
        except TemplateError as exc:
            c.at(
                ds.source,
                ds.key_line(key),
                f"{label}: {key}: {exc.message}",
                exc.hint or "see the template syntax in the lok documentation",
            )
            ok = False
            continue
        for name in sorted(read - allowed):
            ok = False
            c.at(ds.source, _name_line(ds, key, text, name), *_undefined(label, key, name, allowed))
        refs += [(key, name) for name in sorted(names)]
    return refs if ok else None


def _undefined(label: str, key: str, name: str, allowed: set[str]) -> tuple[str, str]:
    """(message, hint) for a top-level template name that nothing defines."""
    from lokfile.templates.render import LOOP_NAMES

    if name in LOOP_NAMES:
        return (
            f"{label}: {key}: '{name}' is only defined in a for_each step",
            "add for_each to this step, or remove it",
        )
    close = did_you_mean(name, sorted(allowed))
    message = f"{label}: {key}: undefined name '{name}'"
    if close:
        message += f" (did you mean '{close}'?)"
    return message, f"names a template can use: {', '.join(sorted(allowed))}"


def _name_line(ds: DraftStep, key: str, text: str, name: str) -> int | None:
    """The file line where `name` first appears in the value of `key` (else the key's)."""
    import re

    start = ds.key_line(key)
    found = re.search(rf"(?<![\w.]){re.escape(name)}\b", text)
    if start is None or found is None:
        return start
    lines = ds.source.text.splitlines()
    opening = lines[start - 1].rstrip() if 0 < start <= len(lines) else ""
    # TOML drops the newline right after an opening triple quote
    offset = 1 if opening.endswith(('"""', "'''")) else 0
    return start + offset + text.count("\n", 0, found.start())


def _check_graph(c: _Checker, built: list[_Built]) -> None:
    nodes = [wfgraph.Node(b.name, b.depends_on, tuple(b.refs)) for b in built]
    for issue in wfgraph.check(nodes):
        ds = built[issue.index].draft
        message = issue.message
        if issue.other is not None:
            other = built[issue.other].draft
            where = (
                f"line {other.line}"
                if other.source is ds.source
                else f"{other.source.label}:{other.line}"
            )
            message += f" (first defined at {where})"
        c.at(ds.source, ds.key_line(issue.key), message, issue.hint)
