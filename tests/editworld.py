"""A project with an edit step, for the tests that stop lok while it edits files.

The `test` backend answers with edits to FILES files (and one new file); the
step's `verify` command is the test's to choose (a long sleep holds lok inside
verify; a failing one makes it restore the files).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from lokfile.hashing import digest_bytes
from tests.lokrun import write


def tree(root: Path) -> dict[str, str]:
    """Every file and folder under root (outside .lok/) with its digest and mode."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".lok"]
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = "dir"
        for f in filenames:
            p = Path(dirpath) / f
            st = p.lstat()
            kind = "link:" + os.readlink(p) if p.is_symlink() else digest_bytes(p.read_bytes())
            out[os.path.relpath(p, root)] = f"{kind} {stat.S_IMODE(st.st_mode):o}"
    return out


def edit_answer(files: int) -> str:
    edits = [
        {"file": f"src/f{i:02d}.py", "old": "VALUE = 1", "new": "VALUE = 2"} for i in range(files)
    ]
    edits.append({"file": "src/new/created.py", "old": "", "new": "NEW = 1\n"})
    return json.dumps({"edits": edits, "summary": "change every value"})


def edit_project(
    root: Path,
    verify: str,
    files: int = 3,
    size: int = 0,
    fix_retries: int = 0,
    extra_steps: str = "",
) -> Path:
    """Write the sources, lok.toml and `.lok/workflows/fixit.toml`; the project root.

    Each source is `size` bytes of padding around `VALUE = 1`, so a restore
    takes long enough to be interrupted when `size` is large.
    """
    (root / ".lok").mkdir(parents=True, exist_ok=True)
    pad = ("# " + "x" * 70 + "\n") * (size // 73)
    for i in range(files):
        write(root, f"src/f{i:02d}.py", f"{pad}VALUE = 1\n{pad}")
    (root / "src/f00.py").chmod(0o640)
    write(
        root,
        "lok.toml",
        f"""
        [backends.t]
        type = "test"
        reply = {json.dumps(edit_answer(files))}
        """,
    )
    write(
        root,
        ".lok/workflows/fixit.toml",
        f"""
        name = "fixit"
        [[steps]]
        name = "fix"
        backend = "t"
        apply_edits = true
        verify = {json.dumps(verify)}
        fix_retries = {fix_retries}
        prompt = "Change every value."
        {extra_steps}
        """,
    )
    return root
