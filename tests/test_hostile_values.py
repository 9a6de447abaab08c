"""Hostile files and values: nesting hundreds of levels deep, NUL bytes, values of many
megabytes. Each gets one clear line and the right exit code, never a traceback, and a
value of any size reaches a shell step (through a script file past the argument limit)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from lokfile.process import launch as shellrun
from lokfile.worker import verify
from tests.lokrun import lok, run_json, statuses, write

DEEP = 600  # past Python's recursion limit for tomllib and json


@pytest.fixture(autouse=True)
def _a_project(tmp_path: Path) -> None:
    """Each test's folder is a lok project, so `lok run` keeps its history there."""
    (tmp_path / ".lok").mkdir()


@pytest.mark.parametrize(
    "nest", ["x = " + "[" * DEEP + "]" * DEEP, "x = " + "{ y = " * DEEP + "1" + " }" * DEEP]
)
def test_a_workflow_nested_hundreds_of_levels_deep_is_bad_input_naming_the_file(
    tmp_path: Path, nest: str
) -> None:
    write(tmp_path, "wf.toml", f'name = "wf"\n{nest}\n[[steps]]\nname = "a"\nshell = "echo hi"\n')
    proc = lok(tmp_path, "run", "./wf.toml")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("Error: wf.toml:2: values nest deeper than 100 levels")
    assert "Hint: " in proc.stderr and "internal error" not in proc.stderr


def test_a_lok_toml_nested_hundreds_of_levels_deep_is_bad_input_naming_the_file(
    tmp_path: Path,
) -> None:
    write(tmp_path, "lok.toml", "[defaults]\nx = " + "[" * DEEP + "]" * DEEP + "\n")
    write(tmp_path, "wf.toml", 'name = "wf"\n[[steps]]\nname = "a"\nshell = "echo hi"\n')
    proc = lok(tmp_path, "run", "./wf.toml")
    assert proc.returncode == 2, proc.stderr
    assert "lok.toml:2: values nest deeper than 100 levels" in proc.stderr
    assert "internal error" not in proc.stderr


def test_deeply_nested_json_in_a_step_output_reads_as_text_and_nothing_crashes(
    tmp_path: Path,
) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    field = '{"k": ' + "[" * 5000 + "]" * 5000 + "}"
    write(tmp_path, "deep.json", deep)
    write(tmp_path, "field.json", field)
    write(
        tmp_path,
        "wf.toml",
        """
        name = "wf"
        [[steps]]
        name = "a"
        shell = "cat deep.json"
        output_format = "json"
        [[steps]]
        name = "length"
        depends_on = ["a"]
        shell = "printf '%s' {{ steps.a.output | length }}"
        [[steps]]
        name = "c"
        shell = "cat field.json"
        [[steps]]
        name = "field"
        depends_on = ["c"]
        shell = "echo {{ steps.c.k }}"
        [[steps]]
        name = "loop"
        depends_on = ["a"]
        for_each = "steps.a.output"
        shell = "echo {{ item }}"
        """,
    )
    doc = run_json(tmp_path, "-k", "./wf.toml")
    assert statuses(doc) == {
        "a": "ran",
        "length": "ran",
        "c": "ran",
        "field": "failed",
        "loop": "failed",
    }
    errors = {s["name"]: s["error"] for s in doc["steps"]}
    assert "not a JSON array" in errors["loop"]
    length = next(s for s in doc["steps"] if s["name"] == "length")
    assert length["output"] == "200000"


def test_a_deeply_nested_inline_loop_source_is_bad_input_naming_the_line(tmp_path: Path) -> None:
    nest = "[" * 3000 + "]" * 3000
    write(
        tmp_path,
        "wf.toml",
        f'name = "wf"\n[[steps]]\nname = "a"\nfor_each = \'{nest}\'\nshell = "echo {{{{ item }}}}"\n',
    )
    proc = lok(tmp_path, "run", "./wf.toml")
    assert proc.returncode == 2, proc.stderr
    assert "wf.toml:4: step 'a': for_each" in proc.stderr
    assert "nests deeper than 200 levels" in proc.stderr and "internal error" not in proc.stderr


def test_a_nul_byte_in_an_output_fails_the_shell_step_naming_it(tmp_path: Path) -> None:
    write(
        tmp_path,
        "wf.toml",
        """
        name = "wf"
        [[steps]]
        name = "x"
        shell = "printf 'a\\\\000b'"
        [[steps]]
        name = "quoted"
        depends_on = ["x"]
        shell = "printf '%s' {{ steps.x.output }}"
        [[steps]]
        name = "raw"
        depends_on = ["x"]
        shell = "printf '%s' {{ steps.x.output | raw }}"
        """,
    )
    proc = lok(tmp_path, "run", "-k", "./wf.toml")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert (
        "✗ quoted failed: the value of {{ steps.x.output }} holds a NUL byte (at offset 1)"
        in proc.stderr
    )
    assert "✗ raw failed: the command holds a NUL byte" in proc.stderr


# ---------------------------------------------------------------------------
# Values past the argument limit
# ---------------------------------------------------------------------------

# 2.4 MB of text that breaks naive quoting, ending on a non-blank (outputs are stripped)
GEN = (
    "import sys\n"
    "line = 'it\\'s \"$(touch MARKER)\" `touch MARKER` \\\\ $HOME é 💥 ;|&'\n"
    "sys.stdout.write('\\n'.join([line] * 40000) + '.')\n"
)
SAME = " | cmp - expected.txt && echo same"
BIG_STEPS = {
    "bare": "printf '%s' {{ steps.big.output }}" + SAME,
    "double quotes": "printf '%s' \\\"{{ steps.big.output }}\\\"" + SAME,
    "heredoc": "cat <<'EOF' | head -c -1" + SAME + "\\n{{ steps.big.output }}\\nEOF",
    "command substitution": 'v=\\"$(printf %s {{ steps.big.output }})\\"; printf %s \\"$v\\"'
    + SAME,
}


def big_project(root: Path, wrapper: str | None) -> None:
    write(root, "gen.py", GEN)
    write(root, "a.txt", "1\n")
    config = '[backends.echo]\ntype = "command"\ncommand = "cat"\n'
    if wrapper:
        config += f"[defaults]\ncommand_wrapper = {json.dumps(wrapper)}\n"
    write(root, "lok.toml", config)
    steps = [f'[[steps]]\nname = "big"\nshell = "{sys.executable} gen.py | tee expected.txt"\n']
    for i, command in enumerate(BIG_STEPS.values()):
        steps.append(f'[[steps]]\nname = "s{i}"\ndepends_on = ["big"]\nshell = "{command}"\n')
    edit = json.dumps({"edits": [{"file": "a.txt", "old": "1", "new": "2"}]})
    steps.append(
        "[[steps]]\n"
        'name = "fix"\n'
        'depends_on = ["big"]\n'
        'backend = "echo"\n'
        f"prompt = {json.dumps(edit)}\n"
        "apply_edits = true\n"
        "verify = \"printf '%s' {{ steps.big.output }}" + SAME + '"\n'
    )
    write(root, "wf.toml", 'name = "wf"\n' + "\n".join(steps))


@pytest.mark.parametrize("wrapper", [None, "bash -c '{cmd}'", "{cmd}"])
def test_a_multi_megabyte_value_reaches_shell_steps_and_verify_in_every_context(
    tmp_path: Path, wrapper: str | None
) -> None:
    big_project(tmp_path, wrapper)
    doc = run_json(tmp_path, "./wf.toml")
    assert set(statuses(doc).values()) == {"ran"}, [
        (s["name"], (s["error"] or "")[:300]) for s in doc["steps"]
    ]
    expected = (tmp_path / "expected.txt").read_bytes()
    assert len(expected) > 2_000_000
    for step in doc["steps"]:
        if step["name"].startswith("s"):
            assert step["output"] == "same", step["name"]
    assert (tmp_path / "a.txt").read_text() == "2\n"  # verify passed: the edit stays
    assert not (tmp_path / "MARKER").exists()
    assert list((tmp_path / ".lok" / "tmp").iterdir()) == []  # script files removed


def test_a_large_command_goes_through_a_script_file_a_small_one_does_not(tmp_path: Path) -> None:
    small = shellrun.launch("echo hi", None, tmp_path)
    assert small.argv == ["sh", "-c", "echo hi"] and small.script is None
    command = "printf '%s' '" + "x" * 200_000 + "' | wc -c"
    large = shellrun.launch(command, "bash -c '{cmd}'", tmp_path)
    try:
        assert large.script is not None
        assert Path(large.script).read_text() == command
        assert large.argv == ["sh", "-c", f"bash -c '. '\\''{large.script}'\\'''"]
    finally:
        large.done()
    assert not Path(large.script).exists()


def test_verify_runs_a_command_past_the_argument_limit(tmp_path: Path) -> None:
    value = "a'b\"c$(touch MARKER)\n" * 20_000
    (tmp_path / "want.txt").write_text(value)
    quoted = "'" + value.replace("'", "'\\''") + "'"
    result = verify.run(f"printf '%s' {quoted} | cmp - want.txt", tmp_path, 60)
    assert result.ok, result.error
    digest = hashlib.sha256(value.encode()).hexdigest()
    failed = verify.run(f"printf '%s' {quoted} | sha256sum; exit 3", tmp_path, 60)
    assert not failed.ok and failed.error is not None
    assert digest in failed.error and len(failed.error) < 6000  # the command is shortened
    assert not (tmp_path / "MARKER").exists()
