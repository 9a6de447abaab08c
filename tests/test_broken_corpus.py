"""Every broken workflow in tests/broken/ fails cleanly: exit 2, one `Error:` line naming the
file (and line), one `Hint:` line, no traceback.

Each corpus file starts with `# expect: FRAGMENT` (text the error must contain) and
`# line: N` (the line the error must name, or `none`). Files that cannot carry a
comment (binary, 10 MB, zero bytes) are generated here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.lokrun import entry

CORPUS = Path(__file__).resolve().parent / "broken"
FILES = sorted(CORPUS.glob("*.toml"))
SAMPLE = FILES[::9]  # also through the real executable; CliRunner covers every file


@dataclass(frozen=True)
class Expect:
    fragment: str
    line: int | None


def expectation(path: Path) -> Expect:
    head = path.read_bytes().split(b"\n")[:2]
    fragment = head[0].decode().removeprefix("# expect: ")
    line = head[1].decode().removeprefix("# line: ")
    return Expect(fragment, None if line == "none" else int(line))



@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with no lok.toml and an empty user config folder."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    return project


def check_report(exit_code: int, stdout: str, stderr: str, path: Path, want: Expect) -> None:
    assert exit_code == 2, f"exit {exit_code}\n{stdout}\n{stderr}"
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 2, stderr
    where = f"{path}:{want.line}: " if want.line else f"{path}: "
    assert lines[0].startswith(f"Error: {where}"), lines[0]
    assert want.fragment in lines[0], lines[0]
    assert lines[1].startswith("Hint: ") and len(lines[1]) > len("Hint: ")
    assert stdout == ""


def test_the_corpus_covers_at_least_forty_files() -> None:
    assert len(FILES) >= 40
    for path in FILES:
        assert path.read_bytes().startswith(b"# expect: "), path


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_broken_workflow_is_reported_with_file_line_and_hint(isolated: Path, path: Path) -> None:
    result: Result = CliRunner().invoke(entry, ["workflow", "validate", str(path)])
    check_report(result.exit_code, result.stdout, result.stderr, path, expectation(path))


def lok(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(cwd.parent / "xdg")}
    return subprocess.run([sys.executable, "-m", "lokfile", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("path", SAMPLE, ids=[p.stem for p in SAMPLE])
def test_the_real_executable_reports_the_same(isolated: Path, path: Path) -> None:
    proc = lok(isolated, "workflow", "validate", str(path))
    check_report(proc.returncode, proc.stdout, proc.stderr, path, expectation(path))


def test_binary_garbage_is_not_toml(isolated: Path) -> None:
    path = isolated / "garbage.toml"
    path.write_bytes(bytes(range(256)) * 64)
    proc = lok(isolated, "workflow", "validate", str(path))
    check_report(proc.returncode, proc.stdout, proc.stderr, Path("garbage.toml"),
                 Expect("file is binary, not TOML text", None))


def test_invalid_utf8_without_nul_bytes_names_the_line(isolated: Path) -> None:
    path = isolated / "latin.toml"
    path.write_bytes(b'name = "w"\n\ndescription = "d\xe9j\xe0 vu"\n')
    result = CliRunner().invoke(entry, ["workflow", "validate", str(path)])
    check_report(result.exit_code, result.stdout, result.stderr, Path("latin.toml"),
                 Expect("file is not UTF-8 (byte 0xe9 at line 3)", 3))


def test_a_zero_byte_file_is_empty(isolated: Path) -> None:
    path = isolated / "zero.toml"
    path.write_bytes(b"")
    result = CliRunner().invoke(entry, ["workflow", "validate", str(path)])
    check_report(result.exit_code, result.stdout, result.stderr, Path("zero.toml"),
                 Expect("file is empty", None))


def test_a_ten_megabyte_file_fails_fast_with_its_size(isolated: Path) -> None:
    path = isolated / "huge.toml"
    step = '[[steps]]\nname = "s{}"\nshell = "echo {}"\n\n'
    with path.open("w") as out:
        out.write('name = "huge"\n')
        i = 0
        while out.tell() < 10 * 1024 * 1024:
            out.write(step.format(i, "x" * 200))
            i += 1
    proc = lok(isolated, "workflow", "validate", str(path))
    check_report(proc.returncode, proc.stdout, proc.stderr, Path("huge.toml"),
                 Expect("file is 10.0 MB; lok reads files of at most 4 MB", None))


def test_a_directory_is_not_a_workflow(isolated: Path) -> None:
    (isolated / "flows.toml").mkdir()
    result = CliRunner().invoke(entry, ["workflow", "validate", "flows.toml"])
    check_report(result.exit_code, result.stdout, result.stderr, Path("flows.toml"),
                 Expect("is a directory", None))


def test_several_broken_files_are_each_reported(isolated: Path) -> None:
    targets = [str(CORPUS / "cycle.toml"), str(CORPUS / "no-backend.toml")]
    result = CliRunner().invoke(entry, ["workflow", "validate", *targets])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert [e.split(":")[1].strip() for e in errors] == [t for t in targets]
