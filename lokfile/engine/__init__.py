"""engine: the coordinator side of a run, the only code that writes history.

    coordinator  runs one workflow: gating, units, completion, the run's outcome
    ready        the ready queue over the DAG (a step starts when its dependencies are done)
    dispatch     stale units as jobs: the queue, -j slots, backend limits, the executor
    context      the template context: finished steps' views, in workflow order
    rundoc       the run.json document of a run folder
    units        the keyed pieces a step is split into, and how their results combine
    freshness    a unit's key and the fresh-or-stale decision
    reasons      why a unit is stale, from its key components (pure)
    fingerprint  content digests of declared sources, through the stat cache
    recorder     what a run writes to its history, a transaction at a time
    cost         what a call cost: its reported usage, priced
    spending     a run's money: units priced and estimated, the budget kept
    onecall      one call per key, within a run and across lok processes (leases)
    snapshot     the no-op fast path: a run replayed from file stats alone

The seams are `coordinator.Coordinator` (run a workflow over an executor,
report events) and `snapshot.replay` (tried before anything is loaded). This
face imports nothing, so the fast path loads only snapshot.py:
`from lokfile.engine import snapshot`, `from lokfile.engine.coordinator import …`.
"""

__all__ = ["coordinator", "snapshot"]
