"""process: starting shell commands and ending process trees.

    launch  how a shell command starts: `sh -c TEXT`, or a script file when too large
    tree    ending a process and its descendants for good, telling a dead one from
            a live one, and the Linux hooks (subreaper, parent-death signal)

The seams are `launch.launch` and `tree.kill_tree`. This face imports nothing
(the fast path reaches `tree` through the run database): `from lokfile.process.tree import …`.
"""

__all__ = ["launch", "tree"]
