"""executors: where jobs run, behind one small interface the coordinator talks to.

    coordinator (engine/)                         executor
      ready queue, -j slots, backend limits
      stale unit ──> Job ── submit(job) -> handle ──> runs it (lokfile.worker.execute)
                   <── results(timeout) ──────────── JobEvent   progress line
                                                     JobResult  the outcome (its `worker`
                                                                says where it ran)
                                                     JobCrashed no result: worker died
                                                     Yielded    waits out a Retry-After
                                                                without its slot, then
                                                                asks for it again
                   ── resume(handle) ─────────────────> that job may send again
                   ── cancel(handle) / cancel_all() ──> ends running commands
                   ── close(kill) ──────────────────> done (kill: at once)

The coordinator keeps the queue and every limit, so an executor only starts
what it is given. api chooses the executor (an `ExecutorFactory`) and hands
it to the coordinator, which never imports an implementation:

    local.WorkerPool      worker processes, each running jobs on threads; the
                          guarantees about process trees live there (`lok run`);
                          its HTTP queries run on httplane.HTTPLane, one asyncio
                          loop in a process of its own
    inline.InlineExecutor threads of this process: for tests and tools
    dask.DaskExecutor     the workers of a Dask distributed scheduler
                          (`lok run --executor dask://HOST:PORT`, `[executor]`)
"""

from lokfile.executors.base import (
    Executor,
    ExecutorFactory,
    Handle,
    JobCrashed,
    JobEvent,
    Message,
    Yielded,
)

__all__ = [
    "Executor",
    "ExecutorFactory",
    "Handle",
    "JobCrashed",
    "JobEvent",
    "Message",
    "Yielded",
    "dask",
    "httplane",
    "inline",
    "local",
]
