"""A stamp of lok's own code: the (size, mtime_ns, inode) of its modules.

Caches that hold what lok computed (the loaded-workflow cache, the no-op
snapshot) must not outlive a change to the code that computed it. They keep
this stamp beside what they store and treat a different stamp as a miss. It
costs one scandir per folder named: no file is read.
"""

from __future__ import annotations

import os

PACKAGE = os.path.dirname(os.path.abspath(__file__))


def code_stamp(*folders: str) -> list[list[object]]:
    """The stamp of every `.py` file directly in lokfile/ and in each of `folders`
    (wing names such as "engine", relative to the package)."""
    out: list[list[object]] = []
    for folder in ("", *folders):
        where = os.path.join(PACKAGE, folder)
        try:
            with os.scandir(where) as entries:
                for entry in entries:
                    if entry.name.endswith(".py"):
                        st = entry.stat()
                        out.append([folder, entry.name, st.st_size, st.st_mtime_ns, st.st_ino])
        except OSError:
            out.append([folder, "?"])
    out.sort(key=lambda row: (str(row[0]), str(row[1])))
    return out
