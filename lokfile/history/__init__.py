"""history: the read side of runs, for `lok runs` and `lok gc`.

    runs    run references (latest~N, ids, prefixes), the list of runs, one run in detail
    diff    what changed between two runs, step by step
    report  one run as a self-contained HTML page
    revert  putting back the files a step's edits replaced
    sweep   garbage collection of the store, and verifying what is in it

Each module holds a command's logic over `store/`; the CLI prints what it
returns. This face imports nothing:
`from lokfile.history.runs import resolve`.
"""

__all__ = ["diff", "report", "revert", "runs", "sweep"]
