"""lok leaves nothing in the user's tree for git to pick up: `.lok/.gitignore` ignores
everything lok keeps for itself, itself included, while `.lok/workflows/` stays
committable; an older lok's `.lok/.gitignore` is brought up to date by the next run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lokfile.project import GITIGNORE, gitignore_update
from tests.lokrun import lok, write

WF = """
name = "w"
[[steps]]
name = "hello"
shell = "echo hello"

[[steps]]
name = "big"
depends_on = ["hello"]
shell = "echo {long} | wc -c"
"""

OLD = "# lok's run history and stored outputs (workflows/ stays in git)\nruns/\nlok.db\nlok.db-*\n"


def git(root: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "PATH": "/usr/bin:/bin",
        "HOME": str(root),
    }
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True, env=env
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A clean git repository with a workflow committed in it."""
    root = tmp_path / "repo"
    root.mkdir()
    # a command long enough to go through a script file under .lok/tmp/
    write(root, "wf.toml", WF.format(long="x" * 200_000))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def porcelain(root: Path) -> str:
    return git(root, "status", "--porcelain", "--untracked-files=all", "--ignored=no")


def test_git_status_is_empty_after_a_run_in_a_clean_repository(repo: Path) -> None:
    proc = lok(repo, "run", "wf.toml")
    assert proc.returncode == 0, proc.stderr
    assert (repo / ".lok" / "lok.db").is_file() and (repo / ".lok" / ".gitignore").is_file()
    assert porcelain(repo) == ""
    assert lok(repo, "run", "wf.toml").returncode == 0  # and after a second one
    assert porcelain(repo) == ""


def test_workflows_under_lok_stay_committable(repo: Path) -> None:
    assert lok(repo, "run", "wf.toml").returncode == 0
    write(
        repo, ".lok/workflows/mine.toml", 'name = "mine"\n[[steps]]\nname = "a"\nshell = "true"\n'
    )
    assert porcelain(repo) == "?? .lok/workflows/mine.toml\n"
    git(repo, "add", "-A")  # what the original's workflows do before they commit
    staged = git(repo, "diff", "--cached", "--name-only").splitlines()
    assert staged == [".lok/workflows/mine.toml"]


def test_an_older_gitignore_is_brought_up_to_date_by_the_next_run(repo: Path) -> None:
    write(repo, ".lok/.gitignore", OLD)
    assert lok(repo, "run", "wf.toml").returncode == 0
    assert (repo / ".lok/.gitignore").read_text() == GITIGNORE
    assert porcelain(repo) == ""


def test_a_gitignore_with_the_users_own_lines_keeps_them(repo: Path) -> None:
    write(repo, ".lok/.gitignore", "scratch/\nruns/\nlok.db\nlok.db-*\n")
    assert lok(repo, "run", "wf.toml").returncode == 0
    lines = (repo / ".lok/.gitignore").read_text().splitlines()
    assert lines == ["scratch/", "runs/", "lok.db", "lok.db-*", ".gitignore", "tmp/", "state/"]
    assert porcelain(repo) == ""
    before = (repo / ".lok/.gitignore").stat().st_mtime_ns
    assert lok(repo, "run", "wf.toml").returncode == 0
    assert (repo / ".lok/.gitignore").stat().st_mtime_ns == before  # nothing more to add


def test_gitignore_update_decides_from_the_text_alone() -> None:
    assert gitignore_update(None) == GITIGNORE
    assert gitignore_update(GITIGNORE) is None
    assert gitignore_update(OLD) == GITIGNORE
    assert gitignore_update(OLD.replace("runs/\n", "runs/\nstate/\n")) == GITIGNORE
    mine = "# mine\n*.bak\n"
    assert gitignore_update(mine) == mine + "".join(
        f"{line}\n" for line in GITIGNORE.splitlines() if line and not line.startswith("#")
    )


@pytest.mark.parametrize("example", ["hello", "review"])
def test_the_examples_ship_the_ignore_file_lok_writes_so_a_quick_start_changes_no_tracked_file(
    example: str,
) -> None:
    shipped = Path(__file__).parent.parent / "examples" / example / ".lok" / ".gitignore"
    assert shipped.read_text() == GITIGNORE
    assert gitignore_update(shipped.read_text()) is None
