"""A run's money: each finished unit priced, each stale one estimated, the budget kept.

    stale unit ──plan──> estimate (tokens, cost, how each was estimated)
        │                     │ dry run: shown, nothing called
        v                     v --max-cost: reserved before the job is submitted
    job ends ──settle──> unit.usage priced (lokfile/engine/cost.py); reservation released

An estimate takes its input tokens from the rendered prompt: the last answer's
measured count for this unit, moved by the change in the prompt's length, else
one token per four characters; and its output tokens from the unit's last
recorded answer, else its `max_tokens`, else a stated guess. Under a cap
(`--max-cost`, `[budget] max_cost_usd`) a job whose reservation would pass the
cap is not submitted and the run stops dispatching (`stopped` says why); every
backend a workflow can call must have a price before anything runs (fail closed).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from lokfile.backends import registry
from lokfile.engine.cost import price_call, price_calls, tokens_for_chars
from lokfile.engine.units import Unit
from lokfile.errors import UsageError
from lokfile.model import BackendConfig, Config, Step, StepKind, Workflow
from lokfile.outcome import NO_USAGE, Usage
from lokfile.reporters import money
from lokfile.store.rundb import KeyEntry
from lokfile.worker.jobs import JobResult

GUESS_OUTPUT_TOKENS = 1024  # no answer recorded and no max_tokens: a stated guess
FROM_PROMPT = "input: the prompt, about 4 characters a token"
FROM_LAST_IN = "input: the last answer's count, moved by the prompt's change"
FROM_LAST_OUT = "output: the last answer's"
FROM_MAX = "output: max_tokens"
FROM_GUESS = f"output: a guess of {GUESS_OUTPUT_TOKENS} tokens (no answer recorded, no max_tokens)"


class Estimate(NamedTuple):
    """What a stale unit's call should cost, and how its tokens were estimated."""

    usage: Usage
    how: tuple[str, str]  # (input, output): which of the FROM_* rules

    def doc(self) -> dict[str, Any]:
        """The JSON shape: tokens, `cost_usd` (null when no price is known), the rules."""
        usage = self.usage.doc()
        usage.pop("calls")
        return {**usage, "input_from": self.how[0], "output_from": self.how[1]}


def chars(unit: Unit) -> int:
    """The length of what the backend reads: the system text and the prompt."""
    return len(unit.spec.system or "") + len(unit.spec.prompt or "")


class Ledger:
    """Prices, estimates and (with a cap) the budget of one run."""

    def __init__(
        self,
        workflow: Workflow,
        config: Config,
        cap: float | None,
        previous: Any,  # (step, unit) -> the KeyEntry of its last recorded answer, or None
        dry_run: bool,
    ) -> None:
        self.wf = workflow
        self.config = config
        self.cap = cap
        self.previous = previous
        self.estimating = dry_run or cap is not None
        self.spent = 0.0  # settled: the actual cost of every finished job
        self.reserved: dict[int, float] = {}  # job id -> its estimate, while in flight
        self.stopped: str | None = None  # why the budget stopped the run
        self.not_made = 0  # calls the budget did not make

    # -- a unit's price and estimate ------------------------------------------------

    def asked_model(self, unit: Unit) -> str | None:
        """The model a unit asked for: its step's, else its backend's."""
        backend = unit.spec.backend
        return self.wf.step(unit.step).model or (backend.model if backend else None)

    def settle(self, unit: Unit, result: JobResult) -> None:
        """Price a finished job's calls into `unit.usage`; its reservation becomes its cost."""
        if result.calls:
            texts = (f"{unit.spec.system or ''}\n{unit.spec.prompt or ''}", result.output)
            unit.usage = price_calls(result.calls, unit.spec.backend, self.asked_model(unit), texts)
        held = self.reserved.pop(result.id, 0.0)
        # a call whose actual price is unknown counts at what was set aside for it
        self.spent += held if unit.usage.unpriced_calls else unit.usage.cost_usd

    def plan(self, step: Step, unit: Unit) -> None:
        """Estimate a stale LLM unit (in a dry run, or under a cap)."""
        if self.estimating and unit.spec.prompt is not None and unit.spec.answer is None:
            unit.estimate = self.estimate(step, unit)

    def estimate(self, step: Step, unit: Unit) -> Estimate:
        """What `unit`'s call should cost (see the module docstring)."""
        backend = unit.spec.backend
        last: KeyEntry | None = self.previous(step.name, unit.name)
        before = Usage.from_doc(last.meta.get("usage")) if last is not None else NO_USAGE
        measured = before.calls == 1 and last is not None and "prompt_chars" in last.meta
        if measured:
            assert last is not None
            moved = (chars(unit) - int(last.meta["prompt_chars"])) // 4
            tokens_in, how_in = max(1, before.input_tokens + moved), FROM_LAST_IN
        else:
            tokens_in, how_in = tokens_for_chars(chars(unit)), FROM_PROMPT
        limit = step.max_tokens or (backend.options.get("max_tokens") if backend else None)
        limit = limit or (registry.default_max_tokens(backend.type) if backend else None)
        if before.calls == 1:
            tokens_out, how_out = before.output_tokens, FROM_LAST_OUT
        elif limit:
            tokens_out, how_out = int(limit), FROM_MAX
        else:
            tokens_out, how_out = GUESS_OUTPUT_TOKENS, FROM_GUESS
        call = {"input_tokens": tokens_in, "output_tokens": tokens_out}
        if last is not None and last.meta.get("model"):
            call["model"] = last.meta["model"]
        usage = price_call(call, backend, self.asked_model(unit))
        if usage.cost is None and before.calls == 1 and before.cost is not None:
            # a model no price list knows, with a cost the backend reported last time
            was = max(1, before.input_tokens + before.output_tokens)
            scaled = before.cost * (tokens_in + tokens_out) / was
            usage = usage._replace(cost_usd=scaled, unpriced_calls=0, source="backend")
        calls = 1 + (step.fix_retries if step.verify else 0)  # a fix retry asks again
        if calls > 1:
            usage = usage._replace(calls=calls, cost_usd=usage.cost_usd * calls)
        return Estimate(usage._replace(estimated=True), (how_in, how_out))

    # -- the budget ---------------------------------------------------------------------

    def reserve(self, job_id: int, unit: Unit) -> bool:
        """Set this job's estimate aside before it is submitted; False (and the run
        stops) when that would pass the cap or the call has no price."""
        if self.cap is None or self.stopped is not None:
            return self.stopped is None
        if unit.spec.prompt is None or unit.spec.answer is not None:
            return True  # a shell step or an edit application: no LLM call
        estimate: Estimate | None = getattr(unit, "estimate", None)
        if estimate is None:
            estimate = unit.estimate = self.estimate(self.wf.step(unit.step), unit)
        cost = estimate.usage.cost
        committed = self.spent + sum(self.reserved.values())
        if cost is None:
            self.stopped = f"{unit.step} has no known price for its call"
            return False
        if committed + cost > self.cap + 1e-12:
            self.stopped = (
                f"the next call ({unit.step}, about {money(cost)}) would pass the "
                f"{money(self.cap)} cap"
            )
            return False
        self.reserved[job_id] = cost
        return True

    def summary(self) -> dict[str, Any] | None:
        """The run document's `budget`: the cap, what was spent, whether it stopped the run."""
        if self.cap is None:
            return None
        return {
            "max_cost_usd": self.cap,
            "spent_usd": round(self.spent, 8),
            "stopped": self.stopped is not None,
            "reason": self.stopped,
            "calls_not_made": self.not_made,
        }

    def check_priced(self, resolve: Any) -> None:
        """Fail closed: under a cap, every backend the workflow's LLM steps can ask must have
        a price before anything runs (UsageError, exit 2, naming the backend)."""
        if self.cap is None:
            return
        for step in self.wf.steps:
            if step.kind is not StepKind.LLM:
                continue
            names = list(dict.fromkeys(step.backends))
            if len(names) > 1 and step.consensus == "synthesis":
                names.append(self.config.consensus.synthesizer or names[0])
            for name in names:
                backend: BackendConfig = resolve(name)
                probe = {"input_tokens": 1000, "output_tokens": 1000}
                if price_call(probe, backend, step.model or backend.model).cost is None:
                    model = step.model or backend.model
                    which = f"model {model}" if model else "no model set"
                    raise UsageError(
                        f"--max-cost: step '{step.name}' asks backend '{name}' ({backend.type}, "
                        f"{which}), which has no known price, so lok cannot keep to the budget",
                        f"add price = {{ input_per_mtok = …, output_per_mtok = … }} to "
                        f"[backends.{name}] in lok.toml (dollars per million tokens)"
                        + ("" if model else ", or set its model"),
                    )
