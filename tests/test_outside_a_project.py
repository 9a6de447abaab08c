"""lok started where there is no project: no lok.toml, no .lok/, maybe no git repository.

Each case gets one clear line and the right exit code, and lok leaves no `.lok/`
behind where it was not asked to keep history.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.lokrun import lok, write

HELLO = 'name = "hello"\n[[steps]]\nname = "say"\nshell = "echo hello"\n'


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    """A folder that is neither a lok project nor inside a git repository."""
    folder = tmp_path / "bare"
    folder.mkdir()
    return folder


def _git_init(folder: Path) -> None:
    subprocess.run(["git", "init", "-q", str(folder)], check=True)


def test_run_outside_a_project_or_repository_keeps_no_history_and_says_how_to_start_one(
    bare: Path,
) -> None:
    write(bare, "hello.toml", HELLO)
    proc = lok(bare, "run", "hello.toml")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"Error: {bare} is neither a lok project nor inside a git repository, "
        "so lok keeps no run history here",
        "Hint: run `lok init` to make this folder a project (lok.toml and .lok/), "
        "or run lok inside a project or a git repository",
    ]
    assert not (bare / ".lok").exists()
    # looking is fine anywhere: a dry run and status write nothing
    assert lok(bare, "run", "--dry-run", "hello.toml").returncode == 0
    assert lok(bare, "status", "hello.toml").returncode == 0
    assert not (bare / ".lok").exists()


def test_the_first_run_in_a_git_repository_creates_lok_and_says_so_once(bare: Path) -> None:
    _git_init(bare)
    write(bare, "hello.toml", HELLO)
    first = lok(bare, "run", "hello.toml")
    assert first.returncode == 0, first.stderr
    assert f"lok: created {bare / '.lok'} for run history" in first.stderr
    assert (bare / ".lok" / ".gitignore").is_file()
    second = lok(bare, "run", "hello.toml")
    assert second.returncode == 0
    assert "created" not in second.stderr


def test_a_lok_toml_makes_a_folder_a_project_without_git(bare: Path) -> None:
    write(bare, "lok.toml", "")
    write(bare, "hello.toml", HELLO)
    proc = lok(bare, "run", "hello.toml")
    assert proc.returncode == 0, proc.stderr
    assert (bare / ".lok").is_dir()


def test_diff_outside_a_git_repository_is_one_clear_error_without_gits_usage(bare: Path) -> None:
    write(bare, "lok.toml", "")  # a lok project, but not a repository
    proc = lok(bare, "diff")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"Error: lok diff reviews git changes, and {bare} is not inside a git repository",
        "Hint: run it in a git repository (or give one with -d DIR)",
    ]
    assert "usage: git" not in proc.stdout + proc.stderr
    assert proc.stdout == ""


def test_workflow_not_found_points_at_lok_init(bare: Path) -> None:
    proc = lok(bare, "run", "nosuch")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == "Error: workflow 'nosuch' not found"
    assert "`lok init` creates .lok/workflows/ with an example" in proc.stderr.splitlines()[1]


def test_dash_c_a_missing_folder_says_the_folder_is_missing(bare: Path) -> None:
    proc = lok(bare, "-C", str(bare / "nowhere"), "run", "x")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"Error: -C {bare / 'nowhere'}: no such folder",
        "Hint: give -C an existing folder",
    ]
