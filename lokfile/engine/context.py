"""The template context of a run: every settled step's view, kept up to date.

A step's prompt, command, condition or loop reads `steps.NAME.output` (and
`.success`, `.error`, `.parsed`, …), `arg.N`, named args, `env` and the
workflow's name and backends. The views are built on the first template that
needs them (a workflow of literal commands never imports the template engine)
and then added to as steps settle, never rebuilt. `steps` iterates in the
workflow's order, not in the order steps finished, so a template that loops
over it renders the same text on every run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from lokfile.model import Status, Workflow
from lokfile.outcome import StepResult


class InWorkflowOrder(Mapping[str, Any]):
    """Settled steps' views, iterated in the workflow's order."""

    def __init__(self, views: dict[str, Any], order: tuple[str, ...]) -> None:
        self.views = views
        self.order = order

    def __getitem__(self, name: str) -> Any:
        return self.views[name]

    def __iter__(self) -> Iterator[str]:
        return (n for n in self.order if n in self.views)

    def __len__(self) -> int:
        return len(self.views)


class TemplateContext:
    """Call it for the context of the next template; `add` each settled step."""

    def __init__(
        self,
        workflow: Workflow,
        args: tuple[str, ...],
        named: Mapping[str, str],
        results: Mapping[str, StepResult],
    ) -> None:
        self.wf = workflow
        self.args = args
        self.named = {a.name: a.default for a in workflow.args if a.default is not None}
        self.named.update(named)
        self.results = results  # the run's results so far (the coordinator's own dict)
        self.env = dict(os.environ)  # as the run started: a step's env does not leak on
        self.views: dict[str, Any] | None = None  # None until a template needs them
        self.backends_seen: set[str] = set()

    def __call__(self) -> Any:
        from lokfile.templates.render import Context

        names = sorted(self.backends_seen)
        backends = " + ".join(n[:1].upper() + n[1:] for n in names) or "lok"
        if self.views is None:
            self.views = {}
            for r in self.results.values():
                self._view(r)
        return Context(
            steps=InWorkflowOrder(self.views, self.wf.step_names),
            args=self.args,
            named_args=self.named,
            env=self.env,
            workflow_name=self.wf.name,
            workflow_backends=backends,
        )

    def add(self, r: StepResult) -> None:
        """A step settled: its backend counts for `workflow.backends`, its view is added."""
        if r.backend:
            self.backends_seen.add(r.backend)
        if self.views is not None:
            self._view(r)

    def _view(self, r: StepResult) -> None:
        from lokfile.templates.render import StepView

        assert self.views is not None
        skipped = r.status is Status.SKIPPED
        self.views[r.name] = StepView(
            output="" if skipped else r.output,
            success=r.success,
            error=r.error,
            backend=r.backend,
            parsed=r.parsed,
            skipped=skipped,
        )
