"""What the multi-LLM modes share: choosing backends, building steps, running them.

Every mode is a generated `Workflow` run through `lokfile.api.run`, so each
call is keyed, cached and recorded like any workflow step. Text that comes
from a user or a model (a topic, a plan, a conversation so far) never goes
into a template: it travels as a named workflow argument (`{{ arg.topic }}`),
so a `{{` inside it is just text.

A step whose answer must be JSON comes with a repair step: it runs only when
the first answer is not the JSON asked for (its condition says so), and asks
the same backend to rewrite that answer. Python reads the answers with the
same lookups templates use, so the two can never disagree about validity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lokfile.errors import EXIT_FAILED, LokError, UsageError
from lokfile.events import Reporter
from lokfile.model import ArgSpec, BackendConfig, Config, Step, StepKind, Workflow

_STEP_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


class ModeFailed(LokError):
    """A mode could not produce its result (exit 1): the run itself is recorded."""

    exit_code = EXIT_FAILED


def mode_failed(ctx: Ctx, run_id: str, message: str, hint: str) -> ModeFailed:
    """The ModeFailed to raise, with run `run_id` recorded as failed first, so the
    history agrees with the exit code."""
    from lokfile import api

    api.mark_failed(ctx.api_ctx, run_id, message)
    return ModeFailed(message, hint)


@dataclass(frozen=True)
class Ctx:
    """The project context plus what every mode run needs."""

    api_ctx: Any  # lokfile.api.Context
    report: Reporter
    jobs: int = 8


# --------------------------------------------------------------------------
# Choosing backends
# --------------------------------------------------------------------------


def split_names(values: tuple[str, ...]) -> list[str]:
    """`-b a,b -b c` as ['a', 'b', 'c'], without duplicates."""
    names: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if name and name not in names:
                names.append(name)
    return names


def check_backend(config: Config, name: str, what: str = "-b") -> BackendConfig:
    """The enabled backend `name`, or a UsageError that lists the configured ones."""
    from lokfile.backends.ready import configured_backend

    return configured_backend(config, name, what)


def usable_backends(config: Config) -> list[str]:
    """The enabled backends that can answer now, in `auto` order (lokfile.backends.ready)."""
    from lokfile.backends.ready import ready_backends

    return [b.name for b in ready_backends(config)]


def choose_backends(
    config: Config, requested: tuple[str, ...], minimum: int, mode: str
) -> list[str]:
    """The backends a mode uses: `-b` as given (checked), else every usable one."""
    names = split_names(requested)
    if names:
        for name in names:
            check_backend(config, name)
        chosen = names
    else:
        chosen = usable_backends(config)
    if len(chosen) < minimum:
        have = ", ".join(chosen) or "none"
        raise UsageError(
            f"lok {mode} needs at least {minimum} backend{'s' if minimum > 1 else ''} "
            f"(usable: {have})",
            "name them with -b a,b or configure more in lok.toml (`lok doctor` checks them)",
        )
    return chosen


def lead_backend(config: Config, explicit: str | None, chosen: list[str], what: str) -> str:
    """The backend that plans, judges or conducts: explicit, else [conductor] backend,
    else the first chosen one."""
    if explicit:
        check_backend(config, explicit, what)
        return explicit
    configured = config.conductor.backend
    if configured and configured in config.backends and config.backends[configured].enabled:
        return configured
    return chosen[0]


# --------------------------------------------------------------------------
# Building workflows
# --------------------------------------------------------------------------


def step_name(prefix: str, backend: str) -> str:
    """A step name that templates can write as `steps.NAME` (letters, digits, _ and -)."""
    slug = _STEP_SAFE.sub("_", backend).strip("-_") or "backend"
    return f"{prefix}-{slug}"


def unique_names(names: list[str]) -> list[str]:
    """`names` with repeats suffixed -2, -3, …"""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0) + 1
        seen[name] = count
        out.append(name if count == 1 else f"{name}-{count}")
    return out


def lit(text: str) -> str:
    """`text` as template source that renders to exactly `text`."""
    if "{" not in text and "%" not in text:
        return text
    return "{{ " + json.dumps(text) + " }}"


def step_timeout_ms(config: Config, backend: str) -> int:
    """The backend's timeout, else `[defaults] timeout`; 0 means none."""
    cfg = config.backends.get(backend)
    seconds = cfg.timeout_s if cfg is not None and cfg.timeout_s is not None else None
    if seconds is None:
        seconds = config.defaults.timeout_s
    return int(seconds * 1000)


def llm_step(
    config: Config,
    name: str,
    backend: str,
    prompt: str,
    *,
    depends_on: tuple[str, ...] = (),
    when: str | None = None,
    output_format: str = "text",
    soft: bool = False,
    min_deps_success: int | None = None,
) -> Step:
    """One LLM step on one backend, with the mode defaults (one retry, config timeout)."""
    return Step(
        name=name,
        kind=StepKind.LLM,
        prompt=prompt,
        backends=(backend,),
        depends_on=depends_on,
        when=when,
        output_format=output_format,
        retries=1,
        timeout_ms=step_timeout_ms(config, backend),
        continue_on_error=soft,
        min_deps_success=min_deps_success,
    )


def workflow(name: str, description: str, steps: list[Step], args: tuple[str, ...]) -> Workflow:
    """A generated workflow; `args` are the named arguments its templates read."""
    return Workflow(
        name=name,
        steps=tuple(steps),
        description=description,
        path=None,
        origin="built-in",
        args=tuple(ArgSpec(a) for a in args),
    )


def field_ref(step: str, key: str) -> str:
    """A JSON field of a step's answer in template syntax (`.output.` reaches fields
    even when they share a name with a step attribute such as `backend`)."""
    return f"steps.{step}.output.{key}"


def defined(step: str, key: str) -> str:
    """Template test: the answer has the field."""
    return f"{field_ref(step, key)} is defined"


def nonblank_text(step: str, key: str) -> str:
    """Template test: the field is a string with something in it."""
    ref = field_ref(step, key)
    return f'({ref} is defined and {ref} is string and {ref} | trim != "")'


def json_pair(
    config: Config,
    name: str,
    backend: str,
    prompt: str,
    valid: Callable[[str], str],
    shape: str,
    *,
    depends_on: tuple[str, ...] = (),
    when: str | None = None,
) -> list[Step]:
    """A JSON step and its repair step (`NAME-retry`), which runs only when the
    answer fails `valid(step)` and asks the same backend to rewrite it as `shape`."""
    retry = f"{name}-retry"
    first = llm_step(
        config, name, backend, prompt, depends_on=depends_on, when=when, output_format="json"
    )
    fix_prompt = (
        "Your previous reply could not be used: it had to be exactly one JSON object "
        "of this shape:\n\n" + lit(shape) + "\n\n"
        "Rewrite it as that JSON object. Keep its meaning; reply with the JSON object "
        "only, no prose and no code fence.\n\nYour previous reply:\n\n"
        f"{{{{ steps.{name}.output }}}}\n"
    )
    second = llm_step(
        config,
        retry,
        backend,
        fix_prompt,
        depends_on=(name,),
        when=f"steps.{name}.success and not ({valid(name)})",
        output_format="json",
    )
    return [first, second]


# --------------------------------------------------------------------------
# Running and reading results
# --------------------------------------------------------------------------


def run(ctx: Ctx, wf: Workflow, named: dict[str, str]) -> Any:
    """Run a generated workflow incrementally and record it; the RunOutcome.

    Ctrl-C ends the mode (exit 130), not just this run: a mode must not carry on
    to its next run with half a result."""
    from lokfile import api
    from lokfile.errors import Interrupted
    from lokfile.model import RunStatus

    options = api.RunOptions(named=named, jobs=ctx.jobs)
    outcome = api.run(ctx.api_ctx, wf, options, ctx.report)
    if outcome.status is RunStatus.INTERRUPTED:
        raise Interrupted(hint="run the same command again: every finished answer is reused")
    return outcome


def answer_object(result: Any) -> dict[str, Any] | None:
    """A step's JSON answer as templates see its fields: the parsed value, else the
    first JSON object in the text; None when that is not an object."""
    if result is None or not result.success:
        return None
    from lokfile.outputs import MISSING, json_value

    value = result.parsed if result.parsed is not None else json_value(result.output, "{")
    if value is MISSING or not isinstance(value, dict):
        return None
    return value


def nonblank(value: Any) -> bool:
    """Mirror of `nonblank_text`: a string with something in it."""
    return isinstance(value, str) and value.strip() != ""


def status_of(result: Any) -> str:
    """A StepResult's status as text (`ran`, `reused`, `failed`, `skipped`, …)."""
    if result is None:
        return "missing"
    status = result.status
    return str(status.value if hasattr(status, "value") else status)


def counts_of(outcomes: list[Any]) -> dict[str, int]:
    """ran / reused / failed / skipped summed over several runs."""
    total: dict[str, int] = {}
    for outcome in outcomes:
        for key, value in outcome.counts.items():
            total[key] = total.get(key, 0) + value
    return total


def calls_made(outcomes: list[Any]) -> int:
    """Backend calls the runs actually made (reused units cost nothing)."""
    made = 0
    for outcome in outcomes:
        for result in outcome.results.values():
            for unit in result.units:
                if status_of(unit) in ("ran", "failed"):
                    made += 1
    return made


def one_line(text: str | None, limit: int = 160) -> str:
    """The first line of `text`, shortened for a progress line."""
    lines = (text or "").strip().splitlines()
    first = lines[0] if lines else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"
