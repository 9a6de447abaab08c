"""The ready queue: a step is ready the moment its last dependency is done.

    workflow order ─> [a, b]            steps with no dependencies, as written
    a done ─────────> [b, c]            c waited only for a: it is ready now
    b done ─────────> [c, d]            no waves: nothing waits for a "level"

The coordinator pops a step, settles or starts it, and says `done` when it is
recorded. The no-op snapshot asks the same queue for the order in which a run
where every step is fresh settles them (`settle_order`), so a replay records
its steps exactly as the normal path does.
"""

from __future__ import annotations

from collections import deque

from lokfile.model import Workflow


class ReadyQueue:
    """The steps of one run whose dependencies are all done, oldest first."""

    def __init__(self, workflow: Workflow) -> None:
        self.dependents: dict[str, list[str]] = {s.name: [] for s in workflow.steps}
        for s in workflow.steps:
            for d in dict.fromkeys(s.depends_on):
                self.dependents[d].append(s.name)
        self.waiting = {s.name: len(set(s.depends_on)) for s in workflow.steps}
        self.ready = deque(s.name for s in workflow.steps if self.waiting[s.name] == 0)

    def __bool__(self) -> bool:
        return bool(self.ready)

    def pop(self) -> str:
        return self.ready.popleft()

    def done(self, name: str) -> None:
        """`name` is recorded: the steps that waited only for it are ready."""
        for child in self.dependents[name]:
            self.waiting[child] -= 1
            if self.waiting[child] == 0:
                self.ready.append(child)

    def sink(self, name: str) -> bool:
        """Does no step depend on `name`? (A failed last step fails the run.)"""
        return not self.dependents[name]


def settle_order(workflow: Workflow) -> list[str]:
    """The order in which a run settles its steps when each is done as soon as it is
    ready: the order of a run where every step is fresh."""
    queue = ReadyQueue(workflow)
    order = []
    while queue:
        name = queue.pop()
        order.append(name)
        queue.done(name)
    return order
