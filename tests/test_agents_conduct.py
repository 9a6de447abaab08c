"""`lok conduct`: any backend conducts through a JSON protocol, turn by turn."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.servers.llm import LLMServer
from tests.test_agents_common import calls, configure, fake_backend, json_of, lok, project, server

__all__ = ["project", "server"]  # fixtures used here


def ask(backend: str, prompt: str) -> str:
    return json.dumps({"action": "ask", "backend": backend, "prompt": prompt})


def answer(text: str) -> str:
    return json.dumps({"action": "answer", "text": text})


def test_the_conductor_asks_a_backend_reads_the_answer_then_answers(project: Path) -> None:
    configure(
        project,
        fake_backend(
            "boss",
            rules=[
                {"contains": "## helper answered", "reply": answer("There are 42 files.")},
                {
                    "contains": "turn 1 of",
                    "reply": "Let me ask.\n" + ask("helper", "Count {{ files }}"),
                },
            ],
        )
        + fake_backend("helper", reply="helper counted 42"),
    )
    result = lok("conduct", "-b", "boss,helper", "-o", "turns.md", "How many files?")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "There are 42 files.\n"
    helper = [c for c in calls(project) if c["name"] == "helper"]
    assert [c["prompt"] for c in helper] == ["Count {{ files }}"]
    second_brief = [c["prompt"] for c in calls(project) if c["name"] == "boss"][1]
    assert "## Turn 1: you asked helper\n\nCount {{ files }}" in second_brief
    assert "## helper answered\n\nhelper counted 42" in second_brief
    assert "turn 1: asked helper: ran" in result.stderr
    transcript = (project / "turns.md").read_text()
    assert "## Turn 1: asked helper" in transcript
    assert transcript.endswith("## Answer\n\nThere are 42 files.\n")


def test_an_http_server_can_conduct_too(project: Path, server: LLMServer) -> None:
    configure(
        project,
        f'[backends.remote]\ntype = "openai"\nurl = "{server.url}/v1"\nmodel = "m"\n\n'
        + fake_backend("helper"),
    )
    task = "Say done. <<reply:" + answer("done over HTTP") + ">>"
    result = lok("conduct", "--json", "-b", "remote,helper", task)
    assert result.exit_code == 0, result.stderr
    doc = json_of(result)
    assert doc["conductor"] == "remote" and doc["backends"] == ["helper"]
    assert doc["answer"] == "done over HTTP"
    assert len(server.model_calls()) == 1


def test_a_reply_that_is_not_json_is_corrected_once(project: Path) -> None:
    configure(
        project,
        fake_backend(
            "boss",
            rules=[{"contains": "could not be used", "reply": answer("fixed answer")}],
            reply="I think the answer is 7.",
        )
        + fake_backend("helper"),
    )
    result = lok("conduct", "-b", "boss,helper", "What is 3+4?")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "fixed answer\n"
    fixes = [c["prompt"] for c in calls(project) if "could not be used" in c["prompt"]]
    assert len(fixes) == 1
    assert "I think the answer is 7." in fixes[0] and '"helper"' in fixes[0]


def test_asking_a_backend_that_is_not_on_the_team_is_corrected_once(project: Path) -> None:
    configure(
        project,
        fake_backend(
            "boss",
            rules=[
                {"contains": "could not be used", "reply": answer("asked nobody")},
                {"contains": "turn 1 of", "reply": ask("nobody", "hello")},
            ],
        )
        + fake_backend("helper"),
    )
    result = lok("conduct", "--json", "-b", "boss,helper", "Task")
    assert result.exit_code == 0, result.stderr
    assert json_of(result)["answer"] == "asked nobody"
    assert not any(c["name"] == "helper" for c in calls(project))


def test_two_unusable_replies_fail_with_exit_1_and_show_the_reply(project: Path) -> None:
    configure(project, fake_backend("boss", reply="no idea") + fake_backend("helper"))
    result = lok("conduct", "-b", "boss,helper", "Task")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert (
        "Error: the conductor (boss) did not reply with a valid decision, even when asked "
        "again; it said: 'no idea'"
    ) in result.stderr
    assert "Hint: try another conductor with --conductor" in result.stderr


def test_max_rounds_from_the_config_stops_a_conductor_that_never_answers(project: Path) -> None:
    configure(
        project,
        '[conductor]\nmax_rounds = 2\nbackend = "boss"\n\n'
        + fake_backend("boss", reply=ask("helper", "more please"))
        + fake_backend("helper", reply="more"),
    )
    result = lok("conduct", "--json", "Never done")
    assert result.exit_code == 1
    doc = json_of(result)
    assert doc["status"] == "failed" and doc["max_rounds"] == 2
    assert doc["error"] == "the conductor (boss) did not give a final answer within 2 rounds"
    assert len(doc["turns"]) == 2 and len(doc["run_ids"]) == 2
    assert sum(c["name"] == "boss" for c in calls(project)) == 2
    assert "Hint: raise [conductor] max_rounds in lok.toml, or pass --max-rounds" in result.stderr


def test_a_rerun_of_the_same_task_replays_from_the_cache(project: Path) -> None:
    configure(
        project,
        fake_backend(
            "boss",
            rules=[
                {"contains": "## helper answered", "reply": answer("final")},
                {"contains": "turn 1 of", "reply": ask("helper", "look")},
            ],
        )
        + fake_backend("helper", reply="seen"),
    )
    assert lok("conduct", "-b", "boss,helper", "Look around").exit_code == 0
    made = len(calls(project))
    assert made == 3
    again = lok("conduct", "--json", "-b", "boss,helper", "Look around")
    assert json_of(again)["calls"] == 0 and json_of(again)["answer"] == "final"
    assert len(calls(project)) == made


def test_a_failing_backend_is_reported_to_the_conductor(project: Path) -> None:
    configure(
        project,
        fake_backend(
            "boss",
            rules=[
                {"contains": "## helper failed", "reply": answer("helper is down")},
                {"contains": "turn 1 of", "reply": ask("helper", "try")},
            ],
        )
        + fake_backend("helper", fail_when="try", fail_kind="auth"),
    )
    result = lok("conduct", "--json", "-b", "boss,helper", "Task")
    assert result.exit_code == 0, result.stderr
    doc = json_of(result)
    assert doc["turns"][0]["status"] == "failed"
    assert "helper failed" in doc["turns"][0]["error"]
    assert doc["answer"] == "helper is down"


def test_ctrl_c_ends_the_whole_mode_with_exit_130(project: Path) -> None:
    configure(
        project,
        fake_backend("boss", reply=ask("helper", "go"), latency_ms=5000) + fake_backend("helper"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "lokfile", "conduct", "-b", "boss,helper", "Task"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not calls(project) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert calls(project), "the conductor was never asked"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert out == ""
    assert "Error: interrupted" in err
    assert len(calls(project)) == 1  # no second turn after the interrupted one
