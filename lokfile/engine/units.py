"""Units: the keyed pieces a step is split into, and how their results combine.

    plain step          one unit ""
    for_each            one unit per item: "item:0", "item:1", …
    samples = N         one unit per sample: "sample:0", … "sample:N-1" (same prompt)
    multi-backend step  one unit per backend: "backend:NAME", then maybe "synthesis"

Each unit has its own key, so adding one item to a loop of 500 runs one job,
and each backend's answer is its own artifact.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from lokfile import hashing
from lokfile.backends import registry
from lokfile.model import BackendConfig, Config, Status, Step, StepKind
from lokfile.outcome import NO_USAGE, Usage

if TYPE_CHECKING:
    from lokfile.store.seams import ArtifactStore

@dataclass(frozen=True, kw_only=True)
class UnitEnv:
    """What splitting a step into units and combining their answers needs: the
    settings, the store (to read answers back), whether this is a dry run."""

    config: Config
    store: ArtifactStore
    dry_run: bool = False

    def backend_config(self, name: str) -> BackendConfig:
        """The configured backend `name`, `auto` resolved to one that can answer now."""
        from lokfile.backends.ready import resolve_backend

        return resolve_backend(name, self.config)


DEFAULT_WEIGHTS = registry.default_weights()


@dataclass(frozen=True, kw_only=True)
class UnitSpec:
    """What one unit will do, fully rendered."""

    unit: str
    command: str | None = None
    prompt: str | None = None
    system: str | None = None
    backend: BackendConfig | None = None
    item: Any = None
    index: int | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    verify: str | None = None  # the step's verify command, rendered
    answer: str | None = None  # for the "apply" unit: the chosen answer to apply edits from
    sample: int | None = None  # which of a `samples = N` step's samples (part of its key)


class StoredEdits(NamedTuple):
    """An edit unit's stored success, to write again over a tree that lost it."""

    files: tuple[tuple[str, str | None, str], ...]  # (path, digest before | None, after)
    answer: str  # the stored answer (the unit's output)
    edits: int  # how many edits it held


@dataclass(kw_only=True)
class Unit:
    step: str
    name: str
    key: str
    components: dict[str, Any]
    spec: UnitSpec
    canonical: str = ""  # the components as canonical JSON (what the key hashes)
    status: Status | None = None  # None until resolved; STALE in a dry run
    reason: str = ""
    output: str = ""
    digest: str | None = None
    error: str | None = None
    duration: float = 0.0
    saved: float = 0.0
    attempts: int = 0
    backend: str | None = None
    model: str | None = None
    truncated: bool = False  # its answer was cut at the token limit (kept with the result)
    worker: str | None = None  # where it ran ("local", a Dask worker's address); None: reused
    started: float = 0.0
    ended: float = 0.0
    # when the work behind this unit's output ran: now (it ran), or in the run that made the
    # stored answer (it was reused); the wall time of a step or run is these spans covered
    span: tuple[float, float] | None = None
    replay: StoredEdits | None = None  # set when the job re-applies stored edits
    # the calls behind its output: made now (it ran or failed), or when the reused answer was made
    usage: Usage = NO_USAGE
    estimate: Any = None  # a stale unit's expected cost (lokfile.engine.spending.Estimate)
    judged: float = 0.0  # when it was found stale (an answer recorded since is a new one)
    twin: Unit | None = None  # the unit of this run whose call answered it (same key)

    @property
    def success(self) -> bool:
        return self.status in (Status.RAN, Status.REUSED)


def backend_times(units: list[Any]) -> tuple[tuple[str, float], ...]:
    """Each backend's time in a multi-backend step (the units that ran now), for the
    progress line; () for other steps."""
    if not any(u.name.startswith("backend:") for u in units):
        return ()
    return tuple(
        (u.name.removeprefix("backend:"), u.duration)
        for u in units
        if u.status is Status.RAN or u.status is Status.FAILED
    )


def _literal(text: str | None) -> bool:
    return text is not None and "{{" not in text and "{%" not in text


def build_units(step: Step, context: Callable[[], Any], env: UnitEnv) -> list[UnitSpec]:
    """Render a ready step and split it into unit specs (`context` builds the template context)."""
    if step.for_each is None and step.kind is StepKind.SHELL and _literal(step.shell):
        return [UnitSpec(unit="", command=step.shell)]  # nothing to render: no template engine needed
    from lokfile.templates.render import eval_for_each, render_prompt, render_shell

    ctx = context()
    if step.for_each is not None:
        items = eval_for_each(step.for_each, ctx)
        specs = []
        for i, item in enumerate(items):
            c = replace(ctx, item=item, index=i)
            if step.kind is StepKind.SHELL:
                assert step.shell is not None
                specs.append(
                    UnitSpec(
                        unit=f"item:{i}", command=render_shell(step.shell, c), item=item, index=i
                    )
                )
            else:
                backend = env.backend_config(step.backends[0])
                specs.append(
                    UnitSpec(
                        unit=f"item:{i}",
                        prompt=render_prompt(step.prompt or "", c),
                        system=_system(step, backend),
                        backend=backend,
                        item=item,
                        index=i,
                        verify=render_shell(step.verify, c) if step.verify else None,
                    )
                )
        return specs
    if step.kind is StepKind.SHELL:
        assert step.shell is not None
        return [UnitSpec(unit="", command=render_shell(step.shell, ctx))]
    prompt = render_prompt(step.prompt or "", ctx)
    verify = render_shell(step.verify, ctx) if step.verify else None
    names = list(dict.fromkeys(step.backends))
    if step.samples > 1:
        backend = env.backend_config(names[0])
        system = _system(step, backend)
        return [
            UnitSpec(
                unit=f"sample:{i}", prompt=prompt, system=system, backend=backend, sample=i, index=i
            )
            for i in range(step.samples)
        ]
    if len(names) == 1:
        backend = env.backend_config(names[0])
        return [
            UnitSpec(
                unit="",
                prompt=prompt,
                system=_system(step, backend),
                backend=backend,
                verify=verify,
            )
        ]
    out = []
    for name in names:
        backend = env.backend_config(name)
        out.append(
            UnitSpec(
                unit=f"backend:{backend.name}",
                prompt=prompt,
                system=_system(step, backend),
                backend=backend,
                verify=verify,
            )
        )
    return out


def _system(step: Step, backend: BackendConfig) -> str | None:
    system = step.system or backend.options.get("system")
    return str(system) if system is not None else None


def combine(step: Step, units: list[Unit], env: UnitEnv) -> UnitSpec | None:
    """A unit to add once the others are done: a synthesis, then an edit application.

    A multi-backend step that edits files applies ONE answer — the combined one —
    in an "apply" unit, so the tree is edited once.
    """
    if step.for_each is not None or step.samples > 1 or len(units) < 2:
        return None
    names = {u.name for u in units}
    wants_synthesis = step.consensus == "synthesis" and "synthesis" not in names
    answers = [u for u in units if u.success and u.name.startswith("backend:")]
    if not wants_synthesis or len(answers) < 2:
        if (step.apply_edits or step.verify) and "apply" not in names and answers:
            text, _digest, ok, winner, _error = aggregate(step, units, env)
            if ok:
                first = units[0].spec
                chosen = env.backend_config(winner) if winner else first.backend
                return UnitSpec(
                    unit="apply",
                    prompt=first.prompt,
                    system=first.system,
                    backend=chosen,
                    verify=first.verify,
                    answer=text,
                    inputs={"answer": hashing.digest_text(text)},
                )
        return None
    config = env.config
    lead = units[0].spec.backend
    synthesizer = env.backend_config(
        config.consensus.synthesizer or (lead.name if lead else "auto")
    )
    original = units[0].spec.prompt or ""
    return UnitSpec(
        unit="synthesis",
        prompt=synthesis_prompt(original, [(u.backend or u.name, u.output) for u in answers]),
        backend=synthesizer,
        inputs={u.name: u.digest for u in answers},
    )


def synthesis_prompt(request: str, answers: list[tuple[str, str]]) -> str:
    """The prompt that merges several backends' answers into one."""
    parts = [
        "Several assistants answered the same request. Merge their answers into one.",
        "",
        "## The request",
        "",
        request.strip(),
        "",
    ]
    for name, text in answers:
        parts += [f"## Answer from {name}", "", text.strip(), ""]
    parts += [
        "Keep every correct and useful point, settle contradictions in favour of what is "
        "best supported, leave out what is wrong, and reply with the merged answer only."
    ]
    return "\n".join(parts)


def normalise(text: str) -> str:
    """How answers are compared in a vote: case and whitespace do not count."""
    return " ".join(text.split()).lower()


def vote(answers: list[tuple[str, str]], weights: dict[str, float] | None) -> tuple[str, float]:
    """The winning answer and its score; ties go to the earliest answer."""
    scores: dict[str, float] = {}
    first: dict[str, str] = {}
    for name, text in answers:
        k = normalise(text)
        w = (weights or {}).get(name, 1.0) if weights is not None else 1.0
        scores[k] = scores.get(k, 0.0) + w
        first.setdefault(k, text.strip())
    best = max(scores.values())
    for _name, text in answers:  # earliest answer among the best
        k = normalise(text)
        if abs(scores[k] - best) < 1e-9:
            return first[k], best
    raise AssertionError("unreachable")


_FLAT = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode
_TREE = json.JSONEncoder(ensure_ascii=False, sort_keys=True, indent=2).encode


def loop_json(rows: list[dict[str, Any]]) -> str:
    """`json.dumps(rows, indent=2, sort_keys=True, ensure_ascii=False)`, byte for byte, for a
    list of objects (a loop's output): json's indenting encoder is pure Python, 25 ms for
    2000 items, so each value goes through the C encoder and only the frame is written
    here (a nested value through the indenting one, moved in to its depth)."""
    if not rows:
        return "[]"

    def value(v: Any) -> str:
        if isinstance(v, (dict, list, tuple)) and v:
            return _TREE(v).replace("\n", "\n    ")  # json writes a newline in a string as \n
        return _FLAT(v)

    return (
        "[\n"
        + ",\n".join(
            "  {\n"
            + ",\n".join(f"    {_FLAT(k)}: {value(row[k])}" for k in sorted(row))
            + "\n  }"
            if row
            else "  {}"
            for row in rows
        )
        + "\n]"
    )


def aggregate(
    step: Step, units: list[Unit], env: UnitEnv
) -> tuple[str, str | None, bool, str | None, str | None]:
    """(output, digest, success, backend, error) of a step from its units."""
    store = env.store
    dry = env.dry_run
    if step.for_each is not None or step.samples > 1:
        rows = [
            {"index": u.spec.index, "output": u.output, "success": u.success}
            | ({"item": u.spec.item} if step.for_each is not None else {})
            for u in units
        ]
        text = loop_json(rows)
        ok = all(u.success for u in units)
        failed = [u for u in units if u.status is Status.FAILED]
        what = "items" if step.for_each is not None else "samples"
        error = f"{len(failed)} of {len(units)} {what} failed" if failed else None
        backend = units[0].backend if units else None
        return text, None if dry else store.put_text(text), ok, backend, error
    if len(units) == 1:
        u = units[0]
        return u.output, u.digest, u.success, u.backend, u.error
    applied = next((u for u in units if u.name == "apply"), None)
    if applied is not None:
        return applied.output, applied.digest, applied.success, applied.backend, applied.error
    answers = [u for u in units if u.name.startswith("backend:") and u.success]
    if not answers:
        errors = "; ".join(
            f"{u.name.removeprefix('backend:')}: {u.error}"
            for u in units
            if u.name.startswith("backend:")
        )
        text = f"All backends failed: {errors}"
        return text, None if dry else store.put_text(text), False, None, text
    pairs = [(u.backend or u.name, u.output) for u in answers]
    if step.consensus == "synthesis":
        synth = next((u for u in units if u.name == "synthesis"), None)
        if synth is not None and synth.success:
            return synth.output, synth.digest, True, synth.backend, None
        return answers[0].output, answers[0].digest, True, answers[0].backend, None
    if step.consensus == "first":
        return answers[0].output, answers[0].digest, True, answers[0].backend, None
    weights = None
    if step.consensus == "weighted_vote":
        weights = {**DEFAULT_WEIGHTS, **env.config.consensus.weights}
    text, _score = vote(pairs, weights)
    return text, None if dry else store.put_text(text), True, None, None
