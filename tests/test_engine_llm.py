"""LLM steps through the engine, with the deterministic `type = "test"` backend."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.lokrun import lok, run_json, statuses, write

CONFIG = """
[backends.alpha]
type = "test"
reply = "alpha says: {prompt}"
log_file = "calls.jsonl"

[backends.beta]
type = "test"
reply = "beta says: {prompt}"
log_file = "calls.jsonl"

[backends.gamma]
type = "test"
reply = "gamma says: {prompt}"
log_file = "calls.jsonl"

[backends.yes1]
type = "test"
reply = "YES"

[backends.yes2]
type = "test"
reply = "  yes "

[backends.no]
type = "test"
reply = "no"

[backends.slow]
type = "test"
reply = "slow {prompt}"
latency_ms = 300
concurrency = 1
log_file = "calls.jsonl"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".lok").mkdir()
    write(tmp_path, "lok.toml", CONFIG)
    return tmp_path


def calls(root: Path) -> list[dict[str, Any]]:
    path = root / "calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_llm_step_is_answered_once_and_then_reused(project: Path) -> None:
    write(
        project,
        ".lok/workflows/one.toml",
        """
        name = "one"
        [[steps]]
        name = "ask"
        backend = "alpha"
        prompt = "hello {{ arg.1 }}"
    """,
    )
    doc = run_json(project, "one", "world")
    assert doc["steps"][0]["output"] == "alpha says: hello world"
    assert doc["steps"][0]["backend"] == "alpha"
    again = run_json(project, "one", "world")
    assert statuses(again) == {"ask": "reused"}
    assert len(calls(project)) == 1
    other = run_json(project, "one", "there")
    assert statuses(other) == {"ask": "ran"}
    assert other["steps"][0]["reason"] == "prompt changed"


def test_multi_backend_answers_are_cached_one_by_one(project: Path) -> None:
    wf = """
        name = "multi"
        [[steps]]
        name = "poll"
        backends = [{names}]
        consensus = "first"
        prompt = "question"
    """
    write(project, ".lok/workflows/multi.toml", wf.replace("{names}", '"alpha", "beta"'))
    doc = run_json(project, "multi")
    assert doc["steps"][0]["output"] == "alpha says: question"
    assert {u["unit"] for u in doc["steps"][0]["units"]} == {"backend:alpha", "backend:beta"}
    write(project, ".lok/workflows/multi.toml", wf.replace("{names}", '"alpha", "beta", "gamma"'))
    doc = run_json(project, "multi")
    ran = {u["unit"]: u["status"] for u in doc["steps"][0]["units"]}
    assert ran == {"backend:alpha": "reused", "backend:beta": "reused", "backend:gamma": "ran"}
    assert [c["name"] for c in calls(project)].count("gamma") == 1
    assert len(calls(project)) == 3


def test_synthesis_merges_the_answers_through_the_synthesizer(project: Path) -> None:
    write(
        project,
        ".lok/workflows/syn.toml",
        """
        name = "syn"
        [[steps]]
        name = "poll"
        backends = ["alpha", "beta"]
        prompt = "what is 2+2"
    """,
    )
    doc = run_json(project, "syn")
    out = doc["steps"][0]["output"]
    assert out.startswith("alpha says: ")  # alpha (first in the list) synthesizes
    assert "## Answer from alpha" in out and "## Answer from beta" in out
    assert "beta says: what is 2+2" in out
    units = {u["unit"] for u in doc["steps"][0]["units"]}
    assert units == {"backend:alpha", "backend:beta", "synthesis"}


def test_vote_picks_the_majority_of_normalised_answers(project: Path) -> None:
    write(
        project,
        ".lok/workflows/vote.toml",
        """
        name = "vote"
        [[steps]]
        name = "v"
        backends = ["no", "yes1", "yes2"]
        consensus = "vote"
        prompt = "is it?"
    """,
    )
    doc = run_json(project, "vote")
    assert doc["steps"][0]["output"].lower() == "yes"


def test_retries_back_off_and_then_succeed(project: Path) -> None:
    state = project / "state"
    state.mkdir()
    write(
        project,
        "lok.toml",
        CONFIG
        + f"""
[backends.flaky]
type = "test"
reply = "finally"
fail_times = 2
fail_kind = "rate_limit"
state_dir = "{state}"
""",
    )
    write(
        project,
        ".lok/workflows/flaky.toml",
        """
        name = "flaky"
        [[steps]]
        name = "f"
        backend = "flaky"
        prompt = "p"
        retries = 3
        retry_delay = 100
    """,
    )
    proc = lok(project, "run", "--json", "flaky")
    doc = json.loads(proc.stdout)
    assert doc["steps"][0]["output"] == "finally"
    assert "will retry" in proc.stderr
    assert "rate limited" in proc.stderr


def test_an_auth_failure_is_not_retried(project: Path) -> None:
    write(
        project,
        "lok.toml",
        CONFIG
        + """
[backends.locked]
type = "test"
fail_when = "p"
fail_kind = "auth"
log_file = "calls.jsonl"
""",
    )
    write(
        project,
        ".lok/workflows/auth.toml",
        """
        name = "auth"
        [[steps]]
        name = "f"
        backend = "locked"
        prompt = "p"
        retries = 5
        retry_delay = 100
    """,
    )
    proc = lok(project, "run", "--json", "auth")
    assert proc.returncode == 1
    assert len(calls(project)) == 1
    assert "authentication failed" in json.loads(proc.stdout)["steps"][0]["error"]


def test_per_backend_concurrency_is_never_exceeded(project: Path) -> None:
    write(
        project,
        ".lok/workflows/many.toml",
        """
        name = "many"
        [[steps]]
        name = "each"
        for_each = '["a", "b", "c", "d"]'
        backend = "slow"
        prompt = "item {{ item }}"
    """,
    )
    doc = run_json(project, "-j", "8", "many")
    assert doc["status"] == "succeeded"
    times = sorted(c["time"] for c in calls(project))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g >= 0.25 for g in gaps), f"calls overlapped: {gaps}"
    rows = json.loads(doc["steps"][0]["output"])
    assert [r["output"] for r in rows] == [f"slow item {x}" for x in "abcd"]


def test_a_loop_over_an_upstream_json_array_caches_item_by_item(project: Path) -> None:
    write(
        project,
        ".lok/workflows/loop.toml",
        """
        name = "loop"
        [[steps]]
        name = "list"
        shell = "cat items.json"
        output_format = "json"
        [[steps]]
        name = "each"
        depends_on = ["list"]
        for_each = "steps.list.output"
        backend = "alpha"
        prompt = "about {{ item.name }}"
    """,
    )
    (project / "items.json").write_text('[{"name": "x"}, {"name": "y"}]')
    doc = run_json(project, "loop")
    assert [r["output"] for r in json.loads(doc["steps"][1]["output"])] == [
        "alpha says: about x",
        "alpha says: about y",
    ]
    (project / "items.json").write_text('[{"name": "x"}, {"name": "y"}, {"name": "z"}]')
    doc = run_json(project, "loop")
    units = {u["unit"]: u["status"] for u in doc["steps"][1]["units"]}
    assert units == {"item:0": "reused", "item:1": "reused", "item:2": "ran"}
    assert len(calls(project)) == 3


def test_auto_uses_the_default_backend(project: Path) -> None:
    write(project, "lok.toml", CONFIG + '\n[defaults]\nbackend = "beta"\n')
    write(
        project,
        ".lok/workflows/auto.toml",
        """
        name = "auto"
        [[steps]]
        name = "q"
        backend = "auto"
        prompt = "hi"
    """,
    )
    assert run_json(project, "auto")["steps"][0]["output"] == "beta says: hi"


def _limited(project: Path, url: str, ask: str, api: str = "") -> None:
    """Backend `api` (OpenAI-style, at `url`, with the extra `api` lines) and workflow
    `limited`: one step `ask` with the lines `ask`."""
    write(project, "lok.toml", f'{CONFIG}\n[backends.api]\ntype = "openai"\nurl = "{url}/v1"\n{api}\n')
    write(
        project,
        ".lok/workflows/limited.toml",
        f'name = "limited"\n[[steps]]\nname = "ask"\nbackend = "api"\n{ask}\n',
    )


def test_a_step_waits_out_a_429_at_the_transport_and_shows_it_without_using_its_retries(
    project: Path,
) -> None:
    from tests.lokrun import db_rows
    from tests.servers.llm import LLMServer

    with LLMServer() as server:
        _limited(project, server.url, 'prompt = "<<fail:429x1>> hello"')
        proc = lok(project, "run", "limited")
        assert proc.returncode == 0, proc.stderr
        assert "echo: hello" in proc.stdout
        assert len(server.model_calls()) == 2
    notes = [line for line in proc.stderr.splitlines() if "↻" in line]
    assert len(notes) == 1, proc.stderr
    assert notes[0].startswith("  ↻ ask: rate limited")
    assert notes[0].endswith("retrying in 1.0s (retry 1 of 3)")
    # one attempt of the step: the transport's retry is not one of the step's `retries`
    assert db_rows(project, "SELECT attempts, status FROM results WHERE step = 'ask'") == [
        (1, "ran")]


def test_a_call_waiting_out_a_429_lends_its_backend_slot_and_the_limit_still_holds(
    project: Path,
) -> None:
    from tests.servers.llm import LLMServer, prompt_of

    with LLMServer(retry_after="1", latency=0.05) as server:
        items = 'for_each = \'["<<fail:429x1>>first", "second", "third"]\'\nprompt = "{{ item }}"'
        _limited(project, server.url, items, "concurrency = 1")
        doc = run_json(project, "-j", "4", "limited")
        asked = [prompt_of("openai", r.body) for r in server.model_calls()]
        most = server.max_inflight
    assert doc["status"] == "succeeded", doc
    # the next one was asked while the first waited out its Retry-After (holding its slot,
    # the first would have gone again first), and the backend never had more than its one
    # call at a time
    assert asked[:2] == ["<<fail:429x1>>first", "second"], asked
    assert sorted(asked[2:]) == ["<<fail:429x1>>first", "third"], asked
    assert most == 1
    rows = json.loads(doc["steps"][0]["output"])
    assert [r["output"] for r in rows] == ["echo: first", "echo: second", "echo: third"]


def test_a_multi_backend_step_has_one_duration_its_wall_time_and_each_backend_its_own(
    project: Path,
) -> None:
    from tests.lokrun import db_rows

    write(project, "lok.toml", CONFIG + """
[backends.left]
type = "test"
reply = "left"
latency_ms = 500

[backends.right]
type = "test"
reply = "right"
latency_ms = 500
""")
    write(
        project,
        ".lok/workflows/both.toml",
        """
        name = "both"
        [[steps]]
        name = "poll"
        backends = ["left", "right"]
        consensus = "first"
        prompt = "which?"
        """,
    )
    proc = lok(project, "run", "--json", "both")
    assert proc.returncode == 0, proc.stderr
    step = json.loads(proc.stdout)["steps"][0]
    each = {u["backend"]: u["duration_s"] for u in step["units"]}
    assert set(each) == {"left", "right"}
    wall = step["duration_s"]
    # the two answers came side by side: the step took about one of them, not both
    assert max(each.values()) <= wall < sum(each.values())
    (row,) = db_rows(project, "SELECT duration, started, ended FROM results "
                     "WHERE step = 'poll' AND unit = ''")
    assert row[0] == pytest.approx(row[2] - row[1], abs=1e-3) == pytest.approx(wall, abs=1e-3)
    run_dir = project / ".lok" / "runs" / "latest"
    recorded = json.loads((run_dir / "run.json").read_text())["steps"][0]["duration"]
    assert recorded == pytest.approx(wall, abs=1e-3)
    line = next(ln for ln in proc.stderr.splitlines() if "✓ poll" in ln)
    assert "; left " in line and ", right " in line
    # reuse saves the wall time the step took, not the sum of its backends' times
    again = run_json(project, "both")
    assert again["saved_s"] == pytest.approx(wall, abs=1e-3)
    assert again["steps"][0]["saved_s"] == pytest.approx(wall, abs=1e-3)
    shown = lok(project, "runs", "show", "--json", "latest~1")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    poll = next(s for s in doc["steps"] if s["name"] == "poll")
    assert poll["wall_s"] == pytest.approx(wall, abs=1e-3)


def test_status_after_a_loop_list_grew_says_how_many_items_are_new(project: Path) -> None:
    wf = """
        name = "grow"
        [[steps]]
        name = "each"
        for_each = '["x", "y"]'
        backend = "alpha"
        prompt = "about {{ item }}"
        [[steps]]
        name = "poll"
        backends = ["alpha", "beta"]
        consensus = "first"
        prompt = "which?"
    """
    write(project, ".lok/workflows/grow.toml", wf)
    assert run_json(project, "grow")["exit_code"] == 0
    grown = wf.replace('["x", "y"]', '["x", "y", "z"]').replace(
        '["alpha", "beta"]', '["alpha", "beta", "gamma"]')
    write(project, ".lok/workflows/grow.toml", grown)
    status = lok(project, "status", "grow")
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line.split(None, 2)[2] for line in status.stdout.splitlines()}
    assert rows == {"each": "1 new item of 3", "poll": "1 new backend of 3"}
    doc = run_json(project, "grow")
    assert {s["name"]: s["reason"] for s in doc["steps"]} == rows
    assert [c["prompt"] for c in calls(project)].count("about z") == 1


def test_an_answer_is_durable_while_the_step_below_it_runs(project: Path) -> None:
    # a kill -9 of the coordinator while the step below an answer runs must not cost
    # the call again
    flow = """
        name = "then"
        [[steps]]
        name = "ask"
        backend = "alpha"
        prompt = "once"
        [[steps]]
        name = "below"
        shell = "touch started && sleep {pause} && echo done"
        depends_on = ["ask"]
    """
    write(project, ".lok/workflows/then.toml", flow.format(pause=30))
    proc = subprocess.Popen(
        [sys.executable, "-m", "lokfile", "run", "then"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (project / "started").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "below never started"
            time.sleep(0.02)
        proc.kill()  # the coordinator, at once; its worker follows it
    finally:
        proc.kill()
        proc.wait()
    write(project, ".lok/workflows/then.toml", flow.format(pause=0))
    doc = run_json(project, "then")
    assert statuses(doc) == {"ask": "reused", "below": "ran"}
    assert len(calls(project)) == 1
