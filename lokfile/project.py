"""Where things live: the project root and the paths under `.lok/`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple


def find_root(start: Path) -> Path:
    """The nearest folder holding `.lok/` or `lok.toml`, searching upward; else `start`."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / ".lok").is_dir() or (folder / "lok.toml").is_file():
            return folder
    return start


def in_git_repository(folder: Path) -> bool:
    """Whether `folder` is inside a git work tree (a `.git` folder or file above it)."""
    folder = folder.resolve()
    return any((d / ".git").exists() for d in (folder, *folder.parents))


def user_dir() -> Path:
    """`~/.config/lok` (honouring XDG_CONFIG_HOME)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "lok"


def builtin_workflows_dir() -> Path:
    """The built-in workflows: inside the installed package, or the checkout's `workflows/`."""
    here = Path(__file__).resolve().parent
    packaged = here / "workflows"
    return packaged if packaged.is_dir() else here.parent / "workflows"


class Project(NamedTuple):
    """The project root and its `.lok/` layout (a NamedTuple: see errors.Problem)."""

    root: Path

    @property
    def lok_dir(self) -> Path:
        return self.root / ".lok"

    @property
    def workflows_dir(self) -> Path:
        return self.lok_dir / "workflows"

    @property
    def runs_dir(self) -> Path:
        return self.lok_dir / "runs"

    @property
    def db_path(self) -> Path:
        return self.lok_dir / "lok.db"

    @property
    def config_path(self) -> Path:
        return self.root / "lok.toml"


# Everything lok writes for itself, named one by one (so a file of the user's own under
# .lok/ stays visible to git), the ignore file included: a workflow that commits with
# `git add -A` must not carry it. `.lok/workflows/` is not listed: it is the user's.
GITIGNORE = """\
# lok's own state stays out of git, this file included (.lok/workflows/ is yours to commit)
.gitignore
tmp/
runs/
state/
lok.db
lok.db-*
"""

# the lines earlier versions of lok wrote, which a run may replace with GITIGNORE wholesale
_EARLIER_LINES = frozenset(
    {
        "# lok's run history and stored outputs (workflows/ stays in git)",
        "runs/",
        "state/",
        "lok.db",
        "lok.db-*",
    }
)


def gitignore_update(current: str | None) -> str | None:
    """The text `.lok/.gitignore` should hold, given what it holds now (None: no file);
    None when nothing needs to change. A file lok wrote (any version) becomes today's
    text; one with lines of the user's own keeps them, with lok's missing entries added
    at the end."""
    if current is None:
        return GITIGNORE
    have = current.splitlines()
    ours = GITIGNORE.splitlines()
    missing = [line for line in ours if line and not line.startswith("#") and line not in have]
    if not missing:
        return None
    if all(not line.strip() or line in _EARLIER_LINES or line in ours for line in have):
        return GITIGNORE
    return "\n".join([*have, *missing]) + "\n"
