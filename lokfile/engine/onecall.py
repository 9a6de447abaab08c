"""One call per key: across the `lok` processes of a project, and within a run.

Within a run, Dispatch gives a unit whose key is already queued or running no
job of its own: it takes that job's answer (`twin`), which counts as reused.
Across processes, a stale LLM unit claims its key's lease (lokfile/store/leases.py)
just before its job is submitted:

    gate(job, unit) ──claim──> MINE ─────> the budget's reservation ──> GO / REFUSE
                         └──> THEIRS, DONE ──> WAIT (Dispatch.waiting)
    poll() ──> a waiting unit whose key now has a new answer: settled from it (reused)
           └─> one whose holder is gone (finished without an answer, or died): queued
               again, to claim the key and make the call itself

The lease is dropped with the key's result (Recorder.write) or the job's failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import islice

from lokfile.engine.dispatch import GO, REFUSE, WAIT, Dispatch
from lokfile.engine.freshness import Freshness
from lokfile.engine.spending import Ledger
from lokfile.engine.units import Unit
from lokfile.events import StepNote
from lokfile.store.leases import MINE, Holder, Leases
from lokfile.worker.jobs import Job

POLL_S = 0.25  # how often waiting units look for the other process's answer
ANSWERED_ELSEWHERE = "fresh: another lok process made this call"


class OneCall:
    """The gate Dispatch asks before each submit, and the poll of waiting units."""

    def __init__(
        self,
        leases: Leases | None,
        ledger: Ledger,
        freshness: Freshness,
        say: Callable[[StepNote], None],
        dispatch: Dispatch | None = None,
    ) -> None:
        self.leases = leases
        self.ledger = ledger
        self.freshness = freshness
        self.say = say
        self.told: set[str] = set()  # keys whose wait was already said
        self.dispatch = dispatch  # whose queue the claims look ahead into
        # claims made ahead, with an earlier unit's, for units about to start
        self.ahead: dict[str, tuple[str, Holder | None]] = {}
        self.polled = 0.0

    def gate(self, job: Job, unit: Unit) -> str:
        """GO, WAIT (another process makes this call) or REFUSE (over the budget)."""
        if self.leases is not None and _calls(unit):
            verdict, holder = self._claim(unit)
            if verdict != MINE:
                if holder is not None and unit.key not in self.told:
                    self.told.add(unit.key)
                    who = f"pid {holder.pid}" + (f", run {holder.run_id}" if holder.run_id else "")
                    text = f"waiting: another lok ({who}) is making this same call"
                    self.say(StepNote(unit.step, unit.name, text))
                return WAIT
        if not self.ledger.reserve(job.id, unit):
            if self.leases is not None:
                self.leases.release([unit.key])
            return REFUSE
        return GO

    def _claim(self, unit: Unit) -> tuple[str, Holder | None]:
        """The unit's claim: made now together with those of the queued units that may
        start with it (as many as there are free slots), in one transaction, or made so
        already when an earlier unit was claimed."""
        found = self.ahead.pop(unit.key, None)
        if found is not None:
            return found
        assert self.leases is not None
        batch = [unit]
        if self.dispatch is not None:
            room = self.dispatch.slots - len(self.dispatch.inflight) - 1
            for queued in islice(self.dispatch.queue, max(0, room)):
                if _calls(queued.unit) and queued.unit.key != unit.key:
                    batch.append(queued.unit)
        got = self.leases.claim_many([(u.key, u.judged) for u in batch])
        for other in batch[1:]:
            self.ahead[other.key] = got[other.key]
        return got[unit.key]

    def poll(self, dispatch: Dispatch) -> list[Unit]:
        """Units settled from another process's answer (with their twins); the waiting
        units whose key is free again go back to the queue."""
        if not dispatch.waiting or self.leases is None:
            return []
        now = time.monotonic()
        if now - self.polled < POLL_S:
            return []
        self.polled = now
        settled: list[Unit] = []
        still = []
        for queued in dispatch.waiting:
            unit = queued.unit
            if self.freshness.settle(unit):
                for one in (unit, *dispatch.take_followers(unit)):
                    if one is not unit:
                        self.freshness.settle(one, since=0.0)
                    one.reason = ANSWERED_ELSEWHERE
                    settled.append(one)
            elif self.leases.free(unit.key):
                dispatch.queue.appendleft(queued)  # claim it, and call, at the next start
            else:
                still.append(queued)
        dispatch.waiting = still
        return settled

    def heartbeat(self) -> None:
        """Renew this process's leases now and then."""
        if self.leases is not None:
            self.leases.heartbeat()


def _calls(unit: Unit) -> bool:
    """Does this unit's job ask a backend (and so claim its key)?"""
    return unit.spec.prompt is not None and unit.spec.answer is None


def for_run(
    ledger: Ledger,
    leases: Leases | None,
    freshness: Freshness,
    dispatch: Dispatch,
    say: Callable[[StepNote], None],
) -> OneCall:
    """The run's gate, set on its Dispatch."""
    one = OneCall(leases, ledger, freshness, say, dispatch)
    dispatch.gate = one.gate
    return one
