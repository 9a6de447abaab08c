"""The `lok` command itself: version, help, start-up cost, error conventions."""

from __future__ import annotations

import subprocess
import sys

from lokfile import __version__
from lokfile.cli import COMMANDS


def _lok(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lokfile", *args], capture_output=True, text=True, timeout=60
    )


def test_version_prints_the_version() -> None:
    proc = _lok("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"lok {__version__}"


def test_version_loads_neither_click_nor_the_command_table() -> None:
    for flag in ("--version", "-V"):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "lokfile", flag],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0 and proc.stdout == f"lok {__version__}\n"
        imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
        assert "click" not in imported and "lokfile.cli" not in imported


def test_help_lists_every_command_with_its_summary() -> None:
    proc = _lok("--help")
    assert proc.returncode == 0
    for name, (_target, summary) in COMMANDS.items():
        assert f"{name} " in proc.stdout
        assert summary[:30] in proc.stdout


def test_help_and_version_import_no_heavy_library() -> None:
    for args in (["--help"], ["--version"]):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "lokfile", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
        for heavy in ("httpx", "jinja2", "sqlite_utils", "sqlite3", "watchfiles"):
            assert heavy not in imported, f"`lok {args[0]}` imports {heavy}"


def test_every_command_module_loads() -> None:
    for name in COMMANDS:
        proc = _lok(name, "--help")
        assert proc.returncode == 0, f"lok {name} --help: {proc.stderr}"
        assert "Usage:" in proc.stdout


def test_an_unknown_command_is_a_usage_error_without_traceback() -> None:
    proc = _lok("frobnicate")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "No such command" in proc.stderr


def test_every_command_that_picks_backends_spells_it_dash_b_backend() -> None:
    for name in ("ask", "doctor", "hunt", "audit", "explain", "diff", "ci", "fix", "debate",
                 "spawn", "conduct", "suggest"):
        shown = _lok(name, "--help").stdout
        assert "-b, --backend NAMES" in shown, f"lok {name} --help:\n{shown}"
        assert "--backends" not in shown, f"lok {name} --help still shows --backends"


def test_the_old_dash_dash_backends_spelling_still_works() -> None:
    proc = _lok("suggest", "--backends", "nosuch", "find bugs")
    assert proc.returncode == 2
    assert "nosuch" in proc.stderr and "No such option" not in proc.stderr


def test_runs_list_explains_dash_n() -> None:
    shown = _lok("runs", "list", "--help").stdout
    assert "-n, --limit N  Show the newest N runs." in shown
