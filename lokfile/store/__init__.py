"""store: what lok keeps under `.lok/`, and in a team cache beside it.

    artifacts  content-addressed artifacts (`objects/`) and the run folders
    rundb      the run history in `.lok/lok.db` (SQLite): runs, results, keys, cached answers
    schema     that database's migrations, one per schema version
    refs       run references (`latest`, `latest~N`, ids, prefixes) resolved over the history
    leases     one call per key across processes: a lease on a key in the history
    seams      the interfaces the engine uses: `ArtifactStore` (bytes by digest) and
               `ActionCache` (a unit's key -> its result), with the local action cache
    tiered     the team cache: the local action cache first, then a remote one
               (read-through, checked; write-through after success); push, pull, status
    remote     the remote's storage, any fsspec URL (the only importer of fsspec)

The engine reads and writes results only through `seams.ArtifactStore` (today
`artifacts.Store`) and `seams.ActionCache` (`seams.LocalActionCache` over
`rundb.RunDB`, or `tiered.TieredCache` over it and a remote); run folders and
the history stay local. This face imports
nothing (the fast path opens the modules it needs):
`from lokfile.store.seams import ActionCache`, `from lokfile.store.rundb import RunDB`.
"""

__all__ = ["artifacts", "leases", "refs", "remote", "rundb", "schema", "seams", "tiered"]
