"""process: the one way lok runs a command under a deadline, and ends process trees.

    run     the runner: argv in a session of its own with the child guard, stdin
            bytes or /dev/null, a deadline on a timer (no polling), a hook that
            hands the live command to whoever may cancel it, and one kill policy
            for deadline, cancel and exceptions alike; returns `Finished`
    launch  how a shell command becomes argv: `sh -c TEXT`, or a script file when
            too large (inside `[defaults] command_wrapper`)
    tree    ending a process and its family for good (SIGTERM, grace, SIGKILL),
            telling a dead one from a live one, the Linux hooks (subreaper,
            parent-death signal)

The seam is `run.run`: shell steps (worker/execute), verify commands
(worker/verify) and backend CLIs (backends/subproc) all go through it, and
`run.Running.stop` is how the worker's cancel and Ctrl-C end one. Nothing here
imports a wing above it. This face imports nothing (the fast path reaches `tree`
through the run database): `from lokfile.process.tree import …`.
"""

__all__ = ["launch", "run", "tree"]
