"""store: what lok keeps under `.lok/`.

    artifacts  content-addressed artifacts (`objects/`) and the run folders
    rundb      the run history in `.lok/lok.db` (SQLite): runs, results, keys, cached answers
    refs       run references (`latest`, `latest~N`, ids, prefixes) resolved over the history

The seams are `artifacts.Store` (put bytes, get them back by digest) and
`rundb.RunDB`. This face imports nothing (the fast path opens both):
`from lokfile.store.artifacts import Store`, `from lokfile.store.rundb import RunDB`.
"""

__all__ = ["artifacts", "refs", "rundb"]
