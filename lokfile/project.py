"""Where things live: the project root and the paths under `.lok/`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


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


@dataclass(frozen=True)
class Project:
    """The project root and its `.lok/` layout."""

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


GITIGNORE = """\
# lok's run history and stored outputs (workflows/ stays in git)
runs/
state/
lok.db
lok.db-*
"""
