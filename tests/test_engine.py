"""The engine as a user meets it: `lok run` and `lok status` on real projects."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.lokrun import db_rows, lok, original_fixtures, run_json, statuses, write


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".lok").mkdir()
    return tmp_path


# -- the original's test workflows (its tests/*.toml) ------------------------


def test_interpolation_fixture_gives_the_originals_output(project: Path) -> None:
    proc = lok(project, "run", str(original_fixtures() / "test_interpolation.toml"))
    assert proc.returncode == 0, proc.stderr
    assert "hello from step1" in proc.stdout
    assert "step1 said: hello from step1" in proc.stdout
    assert "final: step1 said: hello from step1" in proc.stdout


def test_conditionals_fixture_runs_the_right_branches_and_never_echoes_a_skipped_command(
    project: Path,
) -> None:
    proc = lok(project, "run", str(original_fixtures() / "test_conditionals.toml"))
    assert proc.returncode == 0, proc.stderr
    both = proc.stdout + proc.stderr
    assert "CONDITIONAL_RAN: issues branch" in both
    assert "NOT_CONDITION_RAN: correct" in both
    assert "EQUALS_WORKED" in both
    assert "CONDITIONAL_RAN: clean branch" not in both


def test_parallel_fixture_overlaps_the_three_sleeps(project: Path) -> None:
    proc = lok(project, "run", str(original_fixtures() / "test_parallel.toml"))
    assert proc.returncode == 0, proc.stderr
    both = proc.stdout + proc.stderr
    assert "[parallel]" in both and "Running 3 steps in parallel" in both
    for word in ("A done", "B done", "C done"):
        assert word in proc.stdout
    rows = db_rows(project, "SELECT step, started, ended FROM results WHERE step LIKE 'parallel_%'")
    assert len(rows) == 3
    latest_start = max(r[1] for r in rows)
    earliest_end = min(r[2] for r in rows)
    assert latest_start < earliest_end, f"the sleeps did not overlap: {rows}"


def test_retry_fixture_succeeds_on_the_third_attempt(project: Path) -> None:
    fixtures = original_fixtures()
    Path("/tmp/lok_retry_test_counter").unlink(missing_ok=True)
    proc = lok(project, "run", str(fixtures / "test_retry.toml"))
    assert proc.returncode == 0, proc.stderr
    both = proc.stdout + proc.stderr
    assert "SUCCESS on attempt 3" in proc.stdout
    assert "Retry" in both or "will retry" in both


# -- the same behaviours on lok's own workflows (no files from outside the repository) --


def test_independent_steps_run_at_the_same_time(project: Path) -> None:
    write(
        project,
        ".lok/workflows/fan.toml",
        """
        name = "fan"
        [[steps]]
        name = "left"
        shell = "sleep 0.3; echo left"
        [[steps]]
        name = "middle"
        shell = "sleep 0.3; echo middle"
        [[steps]]
        name = "right"
        shell = "sleep 0.3; echo right"
        [[steps]]
        name = "join"
        depends_on = ["left", "middle", "right"]
        shell = "echo {{ steps.left.output }}+{{ steps.middle.output }}+{{ steps.right.output }}"
        """,
    )
    doc = run_json(project, "fan")
    assert doc["exit_code"] == 0
    assert doc["steps"][-1]["output"] == "left+middle+right"
    rows = db_rows(project, "SELECT started, ended FROM results WHERE step != 'join' AND unit = ''")
    assert len(rows) == 3
    assert max(r[0] for r in rows) < min(r[1] for r in rows), f"no overlap: {rows}"


def test_a_flaky_shell_step_succeeds_on_its_third_attempt_and_says_it_retries(
    project: Path,
) -> None:
    write(
        project,
        ".lok/workflows/flaky.toml",
        """
        name = "flaky"
        [[steps]]
        name = "flaky"
        retries = 3
        retry_delay = 50
        shell = '''
        n=$(cat tries 2>/dev/null || echo 0); n=$((n + 1)); echo $n > tries
        [ $n -ge 3 ] || { echo "try $n fails" >&2; exit 1; }
        echo "worked on try $n"
        '''
        """,
    )
    proc = lok(project, "run", "flaky")
    assert proc.returncode == 0, proc.stderr
    assert "worked on try 3" in proc.stdout
    assert "attempt 1/4 failed: Shell command failed (exit 1)" in proc.stderr
    assert "will retry" in proc.stderr
    assert db_rows(project, "SELECT attempts FROM results WHERE step = 'flaky'") == [(3,)]


# -- incremental behaviour --------------------------------------------------

PIPELINE = """
name = "pipe"

[[steps]]
name = "a"
shell = "cat src/a.txt"
sources = ["src/a.txt"]

[[steps]]
name = "b"
shell = "cat src/b.txt"
sources = ["src/b.txt"]

[[steps]]
name = "upper"
shell = "echo {{ steps.a.output }} | tr a-z A-Z"
depends_on = ["a"]
cache = true

[[steps]]
name = "join"
shell = "echo {{ steps.upper.output }}+{{ steps.b.output }}"
depends_on = ["upper", "b"]
cache = true
"""


def _pipeline(project: Path) -> None:
    write(project, ".lok/workflows/pipe.toml", PIPELINE)
    write(project, "src/a.txt", "alpha\n")
    write(project, "src/b.txt", "beta\n")


def test_second_run_with_nothing_changed_executes_nothing_and_says_so(project: Path) -> None:
    _pipeline(project)
    first = run_json(project, "pipe")
    assert first["counts"]["ran"] == 4
    assert statuses(first)["join"] == "ran"
    assert first["steps"][-1]["output"] == "ALPHA+beta"
    proc = lok(project, "run", "pipe")
    assert proc.returncode == 0
    assert "0 ran, 4 reused" in proc.stderr
    assert "nothing to do" in proc.stderr
    assert "ALPHA+beta" in proc.stdout


def test_changing_one_source_reruns_exactly_the_steps_downstream_of_it(project: Path) -> None:
    _pipeline(project)
    run_json(project, "pipe")
    write(project, "src/b.txt", "BETA2\n")
    doc = run_json(project, "pipe")
    assert statuses(doc) == {"a": "reused", "b": "ran", "upper": "reused", "join": "ran"}
    reasons = {s["name"]: s["reason"] for s in doc["steps"]}
    assert reasons["b"] == "source changed: src/b.txt"
    assert reasons["join"] == "upstream b changed"
    assert doc["steps"][-1]["output"] == "ALPHA+BETA2"


def test_an_upstream_rerun_with_identical_output_reruns_nothing_below_it(project: Path) -> None:
    _pipeline(project)
    run_json(project, "pipe")
    write(project, "src/a.txt", "ALPHA\n")  # a changes, but upper's output does not
    doc = run_json(project, "pipe")
    assert statuses(doc) == {"a": "ran", "b": "reused", "upper": "ran", "join": "reused"}


def test_status_names_the_reason_for_each_step(project: Path) -> None:
    _pipeline(project)
    proc = lok(project, "status", "pipe")
    assert proc.returncode == 0
    assert "never run" in proc.stdout
    run_json(project, "pipe")
    write(project, "src/a.txt", "changed\n")
    proc = lok(project, "status", "pipe")
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert "source changed: src/a.txt" in lines["a"]
    assert "fresh" in lines["b"]
    assert "upstream a will run" in lines["upper"]
    # status runs nothing and records nothing
    assert db_rows(project, "SELECT count(*) FROM runs")[0][0] == 1


def test_dry_run_calls_nothing(project: Path) -> None:
    _pipeline(project)
    write(
        project,
        ".lok/workflows/touch.toml",
        """
        name = "touch"
        [[steps]]
        name = "t"
        shell = "touch MARKER"
    """,
    )
    proc = lok(project, "run", "--dry-run", "touch")
    assert proc.returncode == 0, proc.stderr
    assert not (project / "MARKER").exists()
    assert "would run" in proc.stdout


def test_a_dry_run_prints_the_plan_and_what_would_run_with_no_run_id(project: Path) -> None:
    _pipeline(project)
    run_json(project, "pipe")
    (project / "src" / "b.txt").write_text("changed\n")
    proc = lok(project, "run", "--dry-run", "pipe")
    assert proc.returncode == 0, proc.stderr
    assert "[STALE]" not in proc.stdout and "Results:" not in proc.stdout
    plan = proc.stdout.strip().splitlines()
    assert plan[0] == "Plan (dry run, nothing was run):"
    rows = {m.group(2): (m.group(1), m.group(3)) for line in plan[2:]
            if (m := re.match(r"^  (would run|fresh)\s+(\S+)\s*(.*)$", line))}
    assert rows == {
        "a": ("fresh", ""),
        "b": ("would run", "source changed: src/b.txt"),
        "upper": ("fresh", ""),
        "join": ("would run", "upstream b will run"),
    }
    summary = proc.stderr.strip().splitlines()[-1]
    assert summary.startswith("Dry run: ") and summary.endswith(" — nothing was run")
    assert "[run " not in proc.stderr and "ran," not in proc.stderr
    doc = run_json(project, "--dry-run", "pipe")
    assert doc["run_id"] is None
    assert "a" in doc["plan"]["fresh"] and "b" in doc["plan"]["would_run"]
    assert summary == (f"Dry run: {len(doc['plan']['would_run'])} would run, "
                       f"{len(doc['plan']['fresh'])} fresh — nothing was run")
    assert len(db_rows(project, "SELECT id FROM runs")) == 1  # only the real run
    run_json(project, "pipe")
    fresh = lok(project, "run", "--dry-run", "pipe")
    assert fresh.stderr.strip().splitlines()[-1].startswith(
        "Dry run: nothing would run, every step is fresh")


def test_force_reruns_a_fresh_step(project: Path) -> None:
    _pipeline(project)
    run_json(project, "pipe")
    doc = run_json(project, "--force", "upper", "pipe")
    assert statuses(doc)["upper"] == "ran"
    assert statuses(doc)["a"] == "reused"
    assert {s["name"]: s["reason"] for s in doc["steps"]}["upper"] == "forced"


def test_volatile_shell_steps_run_every_time_but_cut_off_downstream(project: Path) -> None:
    write(
        project,
        ".lok/workflows/vol.toml",
        """
        name = "vol"
        [[steps]]
        name = "probe"
        shell = "echo same"
        [[steps]]
        name = "use"
        shell = "echo got {{ steps.probe.output }}"
        depends_on = ["probe"]
        cache = true
    """,
    )
    run_json(project, "vol")
    doc = run_json(project, "vol")
    assert statuses(doc) == {"probe": "ran", "use": "reused"}


def test_declared_outputs_are_restored_from_the_store_instead_of_rerun(project: Path) -> None:
    write(
        project,
        ".lok/workflows/out.toml",
        """
        name = "out"
        [[steps]]
        name = "gen"
        shell = "mkdir -p out && date +%s%N | tee out/stamp.txt"
        outputs = ["out/stamp.txt"]
    """,
    )
    first = run_json(project, "out")
    stamp = (project / "out/stamp.txt").read_text()
    (project / "out/stamp.txt").unlink()
    second = run_json(project, "out")
    assert statuses(second) == {"gen": "reused"}
    assert (project / "out/stamp.txt").read_text() == stamp
    assert first["steps"][0]["digest"] == second["steps"][0]["digest"]


def _files_pipeline(project: Path, make: str) -> None:
    """`make` writes out/a.txt from src/a.txt and prints nothing; `use` reads the file."""
    write(project, "src/a.txt", "one\n")
    write(
        project,
        ".lok/workflows/files.toml",
        f"""
        name = "files"
        [[steps]]
        name = "make"
        shell = "mkdir -p out && {make} src/a.txt > out/a.txt"
        sources = ["src/a.txt"]
        outputs = ["out/a.txt"]
        [[steps]]
        name = "use"
        shell = "tr a-z A-Z < out/a.txt"
        depends_on = ["make"]
        cache = true
    """,
    )


def test_a_changed_output_file_reruns_the_steps_below_though_nothing_was_printed(
    project: Path,
) -> None:
    _files_pipeline(project, "cat")
    first = run_json(project, "files")
    assert first["steps"][1]["output"] == "ONE"
    write(project, "src/a.txt", "two\n")
    doc = run_json(project, "files")
    assert statuses(doc) == {"make": "ran", "use": "ran"}
    assert doc["steps"][1]["output"] == "TWO"
    assert doc["steps"][1]["reason"] == "upstream make changed"
    assert statuses(run_json(project, "files")) == {"make": "reused", "use": "reused"}


def test_an_output_file_rewritten_with_the_same_bytes_reruns_nothing_below(
    project: Path,
) -> None:
    _files_pipeline(project, "head -c 2")  # out/a.txt holds the first two bytes only
    run_json(project, "files")
    write(project, "src/a.txt", "onwards\n")
    doc = run_json(project, "files")
    assert statuses(doc) == {"make": "ran", "use": "reused"}
    assert doc["steps"][1]["output"] == "ON"


def test_a_changed_output_file_reruns_the_loop_items_below_it(project: Path) -> None:
    # an item's key leaves out its upstream's printed list (one new item runs one item),
    # but not the files its upstream declares: the items' command reads one
    write(project, "src.txt", "v1\n")
    write(
        project,
        ".lok/workflows/each.toml",
        """
        name = "each"
        [[steps]]
        name = "make"
        shell = "mkdir -p out && cp src.txt out/conf.txt && echo '[1, 2]'"
        sources = ["src.txt"]
        outputs = ["out/conf.txt"]
        output_format = "json"
        [[steps]]
        name = "items"
        depends_on = ["make"]
        for_each = "steps.make.output"
        shell = "echo {{ item }} $(cat out/conf.txt)"
        cache = true
    """,
    )
    run_json(project, "each")
    write(project, "src.txt", "v2\n")
    doc = run_json(project, "each")
    assert statuses(doc) == {"make": "ran", "items": "ran"}
    assert [u["output"] for u in json.loads(doc["steps"][1]["output"])] == ["1 v2", "2 v2"]
    assert doc["steps"][1]["reason"] == "upstream make changed"


# -- failures ---------------------------------------------------------------


def test_a_hundred_item_loop_with_three_failures_reruns_exactly_those_three(project: Path) -> None:
    write(
        project,
        ".lok/workflows/loop.toml",
        """
        name = "loop"
        [[steps]]
        name = "each"
        for_each = "{{ range(100) | list }}"
        shell = "if [ -e broken ] && echo ' 7 42 99 ' | grep -q ' {{ item }} '; then exit 1; fi; echo item-{{ item }}"
        cache = true
    """,
    )
    (project / "broken").touch()
    first = run_json(project, "-j", "8", "loop")
    assert first["exit_code"] == 1
    units = first["steps"][0]["units"]
    assert sorted(u["unit"] for u in units if u["status"] == "failed") == [
        "item:42",
        "item:7",
        "item:99",
    ]
    (project / "broken").unlink()
    second = run_json(project, "-j", "8", "loop")
    assert second["exit_code"] == 0
    ran = sorted(u["unit"] for u in second["steps"][0]["units"] if u["status"] == "ran")
    assert ran == ["item:42", "item:7", "item:99"]


def test_a_hard_failure_stops_new_work_and_fails_the_run(project: Path) -> None:
    write(
        project,
        ".lok/workflows/fail.toml",
        """
        name = "fail"
        [[steps]]
        name = "bad"
        shell = "echo oops >&2; exit 3"
        [[steps]]
        name = "after"
        shell = "touch SHOULD_NOT_EXIST"
        depends_on = ["bad"]
    """,
    )
    proc = lok(project, "run", "fail")
    assert proc.returncode == 1
    assert "oops" in proc.stdout + proc.stderr
    assert not (project / "SHOULD_NOT_EXIST").exists()


def test_continue_on_error_hands_the_error_text_downstream(project: Path) -> None:
    write(
        project,
        ".lok/workflows/soft.toml",
        """
        name = "soft"
        [[steps]]
        name = "bad"
        shell = "exit 4"
        continue_on_error = true
        [[steps]]
        name = "after"
        shell = "echo saw-{{ steps.bad.success }}"
        depends_on = ["bad"]
    """,
    )
    doc = run_json(project, "soft")
    assert statuses(doc) == {"bad": "failed", "after": "ran"}
    assert doc["steps"][1]["output"] == "saw-false"
    assert doc["exit_code"] == 0


def test_a_timed_out_step_leaves_no_process_behind(project: Path) -> None:
    write(
        project,
        ".lok/workflows/slow.toml",
        """
        name = "slow"
        [[steps]]
        name = "hang"
        shell = "sleep 3001 & setsid sleep 3002 & sleep 3003"
        timeout = 500
    """,
    )
    proc = lok(project, "run", "slow")
    assert proc.returncode == 1
    assert "timed out" in proc.stdout + proc.stderr
    left = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            # exactly this step's three sleeps (another program's `sleep 300` is not ours)
            if cmd in (b"sleep\x003001\x00", b"sleep\x003002\x00", b"sleep\x003003\x00"):
                left.append(cmd)
    assert left == []


# -- history ----------------------------------------------------------------


def test_every_run_is_recorded_with_a_readable_run_folder(project: Path) -> None:
    _pipeline(project)
    doc = run_json(project, "pipe")
    folder = project / ".lok" / "runs" / "latest"
    assert (folder / "run.json").is_file()
    assert (folder / "join.txt").read_text() == "ALPHA+beta"
    rows = db_rows(project, "SELECT id, status, ran FROM runs")
    assert rows == [(doc["run_id"], "succeeded", 4)]


def test_json_output_is_one_document_on_stdout(project: Path) -> None:
    _pipeline(project)
    doc = run_json(project, "pipe")
    assert doc["workflow"] == "pipe" and doc["status"] == "succeeded"
    assert [s["name"] for s in doc["steps"]] == ["a", "b", "upper", "join"]


def test_unknown_workflow_is_bad_input(project: Path) -> None:
    proc = lok(project, "run", "nope")
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error:")
    assert "Traceback" not in proc.stderr


def test_output_file_receives_the_results_block(project: Path) -> None:
    _pipeline(project)
    proc = lok(project, "run", "-o", "results.txt", "pipe")
    assert proc.returncode == 0
    assert "ALPHA+beta" in (project / "results.txt").read_text()
    assert "ALPHA+beta" not in proc.stdout


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh")
def test_command_wrapper_wraps_every_shell_step(project: Path) -> None:
    write(
        project,
        "lok.toml",
        """
        [defaults]
        command_wrapper = "sh -c '{cmd}' && echo wrapped"
    """,
    )
    write(
        project,
        ".lok/workflows/w.toml",
        """
        name = "w"
        [[steps]]
        name = "q"
        shell = "echo 'it''s'"
    """,
    )
    doc = run_json(project, "w")
    assert doc["steps"][0]["output"].splitlines() == ["its", "wrapped"]


KEEP_GOING = """
name = "kg"
[[steps]]
name = "bad"
shell = "exit 1"
[[steps]]
name = "indep"
shell = "sleep 0.5; echo indep"
[[steps]]
name = "later"
shell = "echo later"
depends_on = ["indep"]
"""


def test_after_a_failure_in_flight_steps_finish_but_nothing_new_starts(project: Path) -> None:
    write(project, ".lok/workflows/kg.toml", KEEP_GOING)
    doc = run_json(project, "kg")
    assert doc["exit_code"] == 1
    assert statuses(doc) == {"bad": "failed", "indep": "ran", "later": "skipped"}


def test_keep_going_runs_every_independent_branch(project: Path) -> None:
    write(project, ".lok/workflows/kg.toml", KEEP_GOING)
    doc = run_json(project, "-k", "kg")
    assert doc["exit_code"] == 1
    assert statuses(doc) == {"bad": "failed", "indep": "ran", "later": "ran"}


def test_a_quorum_step_runs_when_enough_dependencies_succeed(project: Path) -> None:
    write(
        project,
        ".lok/workflows/q.toml",
        """
        name = "q"
        [[steps]]
        name = "r1"
        shell = "echo one"
        [[steps]]
        name = "r2"
        shell = "exit 1"
        [[steps]]
        name = "r3"
        shell = "echo three"
        [[steps]]
        name = "merge"
        depends_on = ["r1", "r2", "r3"]
        min_deps_success = 2
        shell = "echo {{ steps.r1.output }} {{ steps.r3.output }} {{ steps.r2.success }}"
    """,
    )
    doc = run_json(project, "q")
    assert statuses(doc)["merge"] == "ran"
    assert doc["steps"][-1]["output"] == "one three false"
    assert doc["exit_code"] == 0
    write(
        project,
        ".lok/workflows/q.toml",
        (project / ".lok/workflows/q.toml")
        .read_text()
        .replace("min_deps_success = 2", "min_deps_success = 3"),
    )
    doc = run_json(project, "q")
    assert statuses(doc)["merge"] == "failed"
    assert "quorum not reached: 2/3" in doc["steps"][-1]["reason"]
    assert doc["exit_code"] == 1


def test_results_expire_only_after_a_configured_ttl(project: Path) -> None:
    _pipeline(project)
    run_json(project, "pipe")
    assert run_json(project, "pipe")["counts"]["ran"] == 0  # built-in TTL does not apply to steps
    write(project, "lok.toml", "[cache]\nttl_hours = 0.0000001\n")
    doc = run_json(project, "pipe")
    assert {s["name"]: s["reason"] for s in doc["steps"]}["upper"] == "expired"


def test_a_first_run_keeps_history_out_of_git(tmp_path: Path) -> None:
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    write(tmp_path, "wf.toml", 'name = "w"\n[[steps]]\nname = "a"\nshell = "echo hi"\n')
    proc = lok(tmp_path, "run", "wf.toml")
    assert proc.returncode == 0, proc.stderr
    ignore = (tmp_path / ".lok" / ".gitignore").read_text().split()
    assert "runs/" in ignore and "lok.db" in ignore


@pytest.mark.parametrize(
    "wrapper",
    ["sh -c '{cmd}'", 'sh -c "{cmd}"', "env LOK_WRAPPED=1 {cmd}"],
)
def test_command_wrapper_quotes_the_command_for_where_it_lands(project: Path, wrapper: str) -> None:
    write(project, "lok.toml", f"[defaults]\ncommand_wrapper = {json.dumps(wrapper)}\n")
    write(
        project,
        ".lok/workflows/w.toml",
        """
        name = "w"
        [[steps]]
        name = "q"
        shell = "printf '%s|' \\"it's\\" '$HOME' '`x`'; echo"
    """,
    )
    doc = run_json(project, "w")
    assert doc["steps"][0]["output"] == "it's|$HOME|`x`|", doc


def test_the_readme_first_workflow_reruns_nothing(tmp_path: Path) -> None:
    assert lok(tmp_path, "init").returncode == 0
    first = lok(tmp_path, "run", "example")
    assert first.returncode == 0, first.stderr
    assert "3 ran" in first.stderr
    again = lok(tmp_path, "run", "example")
    assert "0 ran, 3 reused" in again.stderr and "nothing to do" in again.stderr
    status = lok(tmp_path, "status", "example").stdout.split()
    assert status.count("fresh") == 6  # three steps, each "fresh  fresh"


def test_a_soft_step_skipped_by_a_failure_lets_its_dependents_run(project: Path) -> None:
    write(project, ".lok/workflows/chain.toml", """
        name = "chain"
        [[steps]]
        name = "bad"
        shell = "exit 1"
        [[steps]]
        name = "guard"
        shell = "echo never"
        depends_on = ["bad"]
        continue_on_error = true
        [[steps]]
        name = "last"
        shell = "echo ran after {{ steps.guard.success }}"
        depends_on = ["guard"]
    """)
    doc = run_json(project, "-k", "chain")
    assert statuses(doc) == {"bad": "failed", "guard": "skipped", "last": "ran"}
    assert doc["steps"][-1]["output"] == "ran after false"
    assert doc["exit_code"] == 1  # bad failed hard


REQUIRED = """
name = "wf"
[args.branch]
description = "the branch to compare"
required = true
[args.depth]
required = true
default = "3"
[[steps]]
name = "first"
shell = "touch RAN"
[[steps]]
name = "use"
depends_on = ["first"]
shell = "echo {{ arg.branch }} {{ arg.depth }}"
"""


@pytest.mark.parametrize("command", ["run", "status"])
def test_a_missing_required_argument_is_bad_input_before_anything_runs(
    tmp_path: Path, command: str
) -> None:
    (tmp_path / ".lok").mkdir()
    write(tmp_path, "wf.toml", REQUIRED)
    proc = lok(tmp_path, command, "./wf.toml")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [
        "Error: workflow 'wf' needs the argument 'branch' (the branch to compare)",
        "Hint: add branch=VALUE after the workflow name or path (lok run wf branch=VALUE)",
    ]
    assert not (tmp_path / "RAN").exists()
    assert (
        not (tmp_path / ".lok" / "lok.db").exists()
        or db_rows(tmp_path, "SELECT id FROM runs") == []
    )
    doc = run_json(tmp_path, "./wf.toml", "branch=main")  # the default covers depth
    assert statuses(doc) == {"first": "ran", "use": "ran"}
    assert (tmp_path / "RAN").exists()


def test_a_built_in_command_checks_required_arguments_too(tmp_path: Path) -> None:
    (tmp_path / ".lok").mkdir()
    write(tmp_path, ".lok/workflows/explain.toml", REQUIRED.replace('"wf"', '"explain"'))
    proc = lok(tmp_path, "explain")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Error: workflow 'explain' needs the argument 'branch'" in proc.stderr
    assert not (tmp_path / "RAN").exists()


def test_a_missing_positional_argument_is_bad_input_said_before_anything_runs(
    project: Path,
) -> None:
    write(
        project,
        ".lok/workflows/greet.toml",
        """
        name = "greet"
        [[steps]]
        name = "first"
        shell = "echo started > first.txt"
        [[steps]]
        name = "hello"
        depends_on = ["first"]
        shell = "echo hello {{ arg.1 }}"
        [[steps]]
        name = "maybe"
        shell = "echo {{ arg.2 | default('nobody') }}"
        """,
    )
    proc = lok(project, "run", "greet")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"Error: {project / '.lok/workflows/greet.toml'}:5: step 'hello' reads {{{{ arg.1 }}}}: "
        "workflow 'greet' needs 1 positional argument, none was given",
        "Hint: lok run greet ARG1",
    ]
    assert not (project / "first.txt").exists()
    assert lok(project, "status", "greet").returncode == 2
    ok = lok(project, "run", "greet", "world")
    assert ok.returncode == 0, ok.stderr
    assert "hello world" in ok.stdout and "nobody" in ok.stdout


def test_forcing_an_unknown_step_names_the_real_option(project: Path) -> None:
    write(project, ".lok/workflows/one.toml", 'name = "one"\n[[steps]]\nname = "a"\nshell = "true"\n')
    proc = lok(project, "run", "--force", "b", "one")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == "Error: --force b: no step 'b' in workflow 'one'"
    assert "--force-step" not in proc.stderr


def test_the_json_of_a_loop_gives_each_item_one_line_of_its_own(project: Path) -> None:
    # a loop of thousands of items is written at the C encoder's speed, one item a line,
    # with every value as json itself would write it (the document above stays indented)
    write(
        project,
        ".lok/workflows/loop.toml",
        """
        name = "loop"
        [[steps]]
        name = "each"
        for_each = '["a", "é \\" quoted", "tab\\tin", "3"]'
        shell = "printf '%s\\n' {{ item }}"
    """,
    )
    proc = lok(project, "run", "--json", "loop")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    lines = proc.stdout.splitlines()
    assert lines[0] == "{" and '  "steps": [' in lines
    units = doc["steps"][0]["units"]
    assert [u["unit"] for u in units] == ["item:0", "item:1", "item:2", "item:3"]
    assert [u["output"] for u in units] == ["a", 'é " quoted', "tab\tin", "3"]
    for unit in units:
        line = json.dumps(unit, ensure_ascii=False, separators=(", ", ": "))
        assert any(text.strip().rstrip(",") == line for text in lines), line
