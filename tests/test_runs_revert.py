"""`lok runs revert RUN --step S`: the files a step's edits replaced come back.

The edit snapshot is planted the way lokfile.worker.snapshots records one (a manifest
artifact linked into the run folder as `<step>.snapshot.json`), so these tests
exercise the command whether or not the engine links snapshots yet.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from lokfile.cli import cli
from lokfile.hashing import digest_text
from lokfile.store.artifacts import Store
from lokfile.worker import snapshots
from tests.lokrun import lok, run_json, write

WF = """
name = "fixer"
[[steps]]
name = "fix"
shell = "echo pretend an LLM edited code.py"
cache = true
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".lok").mkdir()
    write(tmp_path, ".lok/workflows/fixer.toml", WF)
    assert run_json(tmp_path, "fixer")["status"] == "succeeded"
    return tmp_path


def plant_edit(root: Path, rel: str, before: str, after: str) -> None:
    """Record, in the latest run, that step `fix` changed `rel` from `before` to `after`."""
    store = Store(root / ".lok" / "runs")
    manifest = {
        "version": 1,
        "files": {rel: store.put_text(before)},
        "after": {rel: digest_text(after)},
        "modes": {rel: None},
        "dirs": [],
    }
    digest = store.put(json.dumps(manifest, indent=1, sort_keys=True).encode())
    run_id = os.readlink(root / ".lok/runs/latest")
    store.link_output(run_id, snapshots.snapshot_filename("fix"), digest)
    write(root, rel, after)


def revert(root: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["-C", str(root), "runs", "revert", *args])


def test_revert_restores_the_file_the_step_replaced(project: Path) -> None:
    plant_edit(project, "code.py", "def f():\n    return 1\n", "def f():\n    return 2\n")
    result = revert(project, "--step", "fix")
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stdout == "restored code.py\n"
    assert (project / "code.py").read_text() == "def f():\n    return 1\n"


def test_a_file_changed_since_the_edit_is_kept_unless_forced(project: Path) -> None:
    plant_edit(project, "code.py", "original\n", "edited\n")
    write(project, "code.py", "edited, then changed by hand\n")
    proc = lok(project, "runs", "revert", "latest", "--step", "fix")
    assert proc.returncode == 2
    assert "code.py changed after step 'fix' edited it" in proc.stderr
    assert (project / "code.py").read_text() == "edited, then changed by hand\n"
    forced = revert(project, "latest", "--step", "fix", "--force", "--json")
    assert forced.exit_code == 0
    assert json.loads(forced.stdout)["restored"] == ["code.py"]
    assert (project / "code.py").read_text() == "original\n"


def test_a_step_that_edited_nothing_has_nothing_to_restore(project: Path) -> None:
    result = revert(project, "--step", "fix")
    assert result.exit_code == 0
    assert "changed no files; nothing to restore" in result.stdout


def test_an_edit_made_by_a_real_run_is_reverted_even_after_gc(tmp_path: Path) -> None:
    (tmp_path / ".lok").mkdir()
    write(
        tmp_path,
        "lok.toml",
        """
        [backends.editor]
        type = "test"
        reply = '{"edits": [{"file": "code.py", "old": "return 1", "new": "return 2"}]}'
        """,
    )
    write(
        tmp_path,
        ".lok/workflows/edit.toml",
        """
        name = "edit"
        [[steps]]
        name = "fix"
        backend = "editor"
        prompt = "make f return 2"
        apply_edits = true
        """,
    )
    write(tmp_path, "code.py", "def f():\n    return 1\n")
    doc = run_json(tmp_path, "edit")
    assert doc["status"] == "succeeded", doc
    assert (tmp_path / "code.py").read_text() == "def f():\n    return 2\n"
    store = Store(tmp_path / ".lok" / "runs")
    for _digest, path in store.iter_objects():  # old enough that only reachability keeps them
        os.utime(path, (1_000_000_000, 1_000_000_000))
    gc = CliRunner().invoke(cli, ["-C", str(tmp_path), "gc", "--keep", "1"])
    assert gc.exit_code == 0, gc.output
    result = revert(tmp_path, doc["run_id"][:12], "--step", "fix")
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stdout == "restored code.py\n"
    assert (tmp_path / "code.py").read_text() == "def f():\n    return 1\n"


def test_revert_with_a_collected_snapshot_is_a_clear_error(project: Path) -> None:
    plant_edit(project, "code.py", "the original text\n", "edited\n")
    store = Store(project / ".lok" / "runs")
    lost = store.path(digest_text("the original text\n"))
    lost.chmod(0o644)
    lost.unlink()
    proc = lok(project, "runs", "revert", "--step", "fix")
    assert proc.returncode == 1
    assert "snapshot of the edited files is missing" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (project / "code.py").read_text() == "edited\n"


def edit_step(name: str, rel: str, old: str, new: str) -> str:
    answer = json.dumps({"edits": [{"file": rel, "old": old, "new": new}]})
    return (
        f'[[steps]]\nname = {json.dumps(name)}\nbackend = "echo"\n'
        f"prompt = {json.dumps(answer)}\napply_edits = true\n"
    )


def test_steps_whose_names_once_mapped_to_one_file_are_reverted_apart(tmp_path: Path) -> None:
    """`fix/one` and `fix one` (and `Fix`, `fix` on a case-insensitive disk) shared a
    run-folder file, so reverting one restored the other's files."""
    write(tmp_path, "lok.toml", '[backends.echo]\ntype = "command"\ncommand = "cat"\n')
    names = {"fix/one": "a.txt", "fix one": "b.txt", "Fix": "c.txt", "fix": "d.txt"}
    for rel in names.values():
        write(tmp_path, rel, "old\n")
    steps = [edit_step(name, rel, "old", f"new by {name}") for name, rel in names.items()]
    steps.append('[[steps]]\nname = "run"\nshell = "echo \'[1]\'"\noutput_format = "json"\n')
    write(tmp_path, "wf.toml", 'name = "wf"\n' + "\n".join(steps))
    doc = run_json(tmp_path, "./wf.toml")
    assert doc["status"] == "succeeded", doc
    folder = tmp_path / ".lok" / "runs" / doc["run_id"]
    files = sorted(p.name for p in folder.iterdir())
    assert len({f.casefold() for f in files}) == len(files) == 2 * len(names) + 2, files
    assert json.loads((folder / "run.json").read_text())["id"] == doc["run_id"]
    result = revert(tmp_path, doc["run_id"], "--step", "fix/one")
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stdout == "restored a.txt\n"
    assert {rel: (tmp_path / rel).read_text() for rel in names.values()} == {
        "a.txt": "old\n",
        "b.txt": "new by fix one\n",
        "c.txt": "new by Fix\n",
        "d.txt": "new by fix\n",
    }
    assert revert(tmp_path, doc["run_id"], "--step", "Fix").stdout == "restored c.txt\n"
    assert (tmp_path / "d.txt").read_text() == "new by fix\n"


def test_a_run_recorded_under_the_old_names_is_still_reverted_when_its_name_was_unique(
    tmp_path: Path,
) -> None:
    write(tmp_path, "lok.toml", '[backends.echo]\ntype = "command"\ncommand = "cat"\n')
    write(tmp_path, "a.txt", "old\n")
    write(tmp_path, "b.txt", "old\n")
    steps = [edit_step("Fix/A", "a.txt", "old", "new"), edit_step("fix b", "b.txt", "old", "new")]
    write(tmp_path, "wf.toml", 'name = "wf"\n' + "\n".join(steps))
    run_id = run_json(tmp_path, "./wf.toml")["run_id"]
    folder = tmp_path / ".lok" / "runs" / run_id
    for step in ("Fix/A", "fix b"):  # as lok named them before
        new = folder / snapshots.snapshot_filename(step)
        new.rename(folder / step.replace("/", "_").replace(" ", "_").__add__(".snapshot.json"))
    assert revert(tmp_path, run_id, "--step", "Fix/A").stdout == "restored a.txt\n"
    assert revert(tmp_path, run_id, "--step", "fix b").stdout == "restored b.txt\n"


def test_an_old_name_two_steps_shared_is_not_trusted(tmp_path: Path) -> None:
    write(tmp_path, "lok.toml", '[backends.echo]\ntype = "command"\ncommand = "cat"\n')
    write(tmp_path, "a.txt", "old\n")
    write(tmp_path, "b.txt", "old\n")
    steps = [
        edit_step("fix/one", "a.txt", "old", "new"),
        edit_step("fix one", "b.txt", "old", "new"),
    ]
    write(tmp_path, "wf.toml", 'name = "wf"\n' + "\n".join(steps))
    run_id = run_json(tmp_path, "./wf.toml")["run_id"]
    folder = tmp_path / ".lok" / "runs" / run_id
    (folder / snapshots.snapshot_filename("fix/one")).unlink()  # the old run kept one of the two
    (folder / snapshots.snapshot_filename("fix one")).rename(folder / "fix_one.snapshot.json")
    result = revert(tmp_path, run_id, "--step", "fix/one")
    assert result.exit_code == 0, result.output
    assert "nothing to restore" in result.stdout
    assert (tmp_path / "a.txt").read_text() == (tmp_path / "b.txt").read_text() == "new\n"
