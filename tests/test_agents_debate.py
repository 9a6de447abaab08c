"""`lok debate`: parallel rounds, a judged verdict, a transcript, every answer cached."""

from __future__ import annotations

import json
from pathlib import Path

from tests.servers.llm import LLMServer
from tests.test_agents_common import calls, configure, fake_backend, json_of, lok, project, server

__all__ = ["project", "server"]  # fixtures used here

VERDICT_NO = {
    "consensus": False,
    "summary": "Alpha wants tabs, beta wants spaces.",
    "agreements": ["consistency matters"],
    "disagreements": ["tabs versus spaces"],
}
JUDGE_RULE = {"contains": "judge of a debate", "reply": json.dumps(VERDICT_NO)}


def round_of(prompt: str) -> int:
    """Which round a request belongs to (replies quote earlier rounds, so look for the
    round's own opening words)."""
    for k in range(2, 11):
        if f"This is round {k} of a debate" in prompt:
            return k
    return 1 if "State your position" in prompt else 0


def test_each_rounds_questions_reach_the_server_together_and_the_transcript_is_written(
    project: Path, server: LLMServer
) -> None:
    server.latency = 0.8
    configure(
        project,
        "".join(
            f'[backends.{n}]\ntype = "ollama"\nurl = "{server.url}"\nmodel = "llama3.2"\n\n'
            for n in ("alpha", "beta", "gamma")
        )
        + fake_backend("judge", rules=[JUDGE_RULE]),
    )
    result = lok(
        "debate", "-b", "alpha,beta,gamma", "--judge", "judge", "--rounds", "2",
        "-o", "debate.md", "Tabs or spaces?",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    by_round: dict[int, list[float]] = {}
    for call in server.model_calls():
        by_round.setdefault(round_of(str(call.body)), []).append(call.time)
    assert sorted(by_round) == [1, 2]
    for k in (1, 2):
        times = by_round[k]
        assert len(times) == 3
        # each call takes 0.8 s at the server: arrivals this close mean they overlapped
        assert max(times) - min(times) < 0.6, f"round {k} was not concurrent: {times}"
    assert min(by_round[2]) >= max(by_round[1]) + 0.75  # round 2 waits for round 1's answers
    text = (project / "debate.md").read_text()
    assert text.startswith("# Lok Debate Transcript\n")
    assert "**Participants:** alpha, beta, gamma" in text
    assert text.index("## Round 1: Opening positions") < text.index("## Round 2: Responses")
    assert text.count("### alpha") == 2 and text.count("### gamma") == 2
    assert "**No consensus** (judged by judge)" in text
    assert "- tabs versus spaces" in text
    assert "✓ Transcript written to debate.md" in result.stderr
    assert result.stdout == "Outcome: No consensus\n\nAlpha wants tabs, beta wants spaces.\n"


def test_a_rerun_of_the_same_debate_calls_no_backend(project: Path) -> None:
    configure(
        project,
        fake_backend("alpha", reply="tabs", rules=[JUDGE_RULE])
        + fake_backend("beta", reply="spaces"),
    )
    first = lok("debate", "--json", "-b", "alpha,beta", "Tabs or spaces?")
    assert first.exit_code == 0, first.stderr
    made = len(calls(project))
    assert made == 3 * 2 + 1  # two participants, three rounds, one verdict
    again = lok("debate", "--json", "-b", "alpha,beta", "Tabs or spaces?")
    doc = json_of(again)
    assert again.exit_code == 0
    assert len(calls(project)) == made
    assert doc["calls"] == 0
    assert doc["counts"]["ran"] == 0
    assert doc["verdict"] == VERDICT_NO
    assert doc["run_id"] != json_of(first)["run_id"]


def test_the_verdict_is_the_judges_reading_not_a_count_of_agreeing_words(project: Path) -> None:
    agreeable = "I agree, you are right and correct, I concur."
    verdict = {"consensus": False, "summary": "Polite words, opposite conclusions."}
    configure(
        project,
        fake_backend(
            "alpha",
            reply=agreeable,
            rules=[{"contains": "judge of a debate", "reply": json.dumps(verdict)}],
        )
        + fake_backend("beta", reply=agreeable),
    )
    doc = json_of(lok("debate", "--json", "--rounds", "1", "-b", "alpha,beta", "Is X safe?"))
    assert doc["consensus"] is False
    assert doc["verdict"]["summary"] == "Polite words, opposite conclusions."
    assert doc["verdict"]["agreements"] == [] and doc["verdict"]["disagreements"] == []


def test_a_verdict_in_prose_is_asked_for_again_as_json(project: Path) -> None:
    fixed = {"consensus": True, "summary": "Both say spaces.", "agreements": ["spaces"]}
    configure(
        project,
        fake_backend(
            "alpha",
            reply="spaces",
            rules=[
                {
                    "contains": "could not be used",
                    "reply": "```json\n" + json.dumps(fixed) + "\n```",
                },
                {"contains": "judge of a debate", "reply": "They mostly agree on spaces."},
            ],
        )
        + fake_backend("beta", reply="spaces"),
    )
    result = lok("debate", "--json", "--rounds", "1", "-b", "alpha,beta", "Tabs or spaces?")
    assert result.exit_code == 0, result.stderr
    doc = json_of(result)
    assert doc["consensus"] is True
    assert doc["verdict"]["agreements"] == ["spaces"]
    retry = [c for c in calls(project) if "could not be used" in c["prompt"]]
    assert len(retry) == 1
    assert "They mostly agree on spaces." in retry[0]["prompt"]


def test_no_readable_verdict_after_the_second_ask_fails_with_exit_1(project: Path) -> None:
    configure(
        project,
        fake_backend("alpha", reply="tabs") + fake_backend("beta", reply="spaces"),
    )
    result = lok("debate", "--rounds", "1", "-b", "alpha,beta", "Tabs or spaces?")
    assert result.exit_code == 1
    assert "**Outcome:** Undetermined" in result.stdout
    assert "Error: the judge (alpha) did not give a readable verdict, even when asked again" in (
        result.stderr
    )


def test_a_failing_participant_drops_out_and_the_rest_debate_on(project: Path) -> None:
    configure(
        project,
        fake_backend("alpha", reply="tabs", rules=[JUDGE_RULE])
        + fake_backend("beta", reply="spaces")
        + fake_backend("gamma", fail_when="debat"),
    )
    result = lok("debate", "--json", "--rounds", "2", "-b", "alpha,beta,gamma", "Tabs?")
    assert result.exit_code == 0, result.stderr
    doc = json_of(result)
    first, second = doc["rounds"]
    assert [p["status"] for p in first["positions"]] == ["ran", "ran", "failed"]
    assert [p["status"] for p in second["positions"]] == ["ran", "ran", "skipped"]
    assert "gamma failed" in first["positions"][2]["error"]
    assert doc["consensus"] is False
    replies = [c for c in calls(project) if "This is round 2" in c["prompt"]]
    assert len(replies) == 2
    assert all("### gamma" not in c["prompt"] for c in replies)


def test_one_position_is_no_debate_and_never_a_consensus(project: Path) -> None:
    configure(
        project,
        fake_backend("alpha", reply="tabs", rules=[JUDGE_RULE])
        + fake_backend("beta", fail_when="debat"),
    )
    result = lok("debate", "--json", "-b", "alpha,beta", "Tabs?")
    assert result.exit_code == 1
    doc = json_of(result)
    assert doc["status"] == "failed"
    assert doc["consensus"] is None and doc["verdict"] is None
    assert doc["error"] == "only 1 of 2 backends gave a position; a debate needs two"
    assert "Error: only 1 of 2 backends gave a position" in result.stderr
    assert not any("judge of a debate" in c["prompt"] for c in calls(project))


def test_a_debate_needs_two_backends(project: Path) -> None:
    configure(project, fake_backend("alpha") + fake_backend("beta"))
    result = lok("debate", "-b", "alpha", "Tabs?")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Error: lok debate needs at least 2 backends (usable: alpha)" in result.stderr
    assert calls(project) == []


def test_the_topic_reaches_the_backends_verbatim_even_with_template_syntax(
    project: Path,
) -> None:
    topic = "Is {{ steps.x.output }} or {% if a %} safe in a prompt?"
    configure(project, fake_backend("alpha", rules=[JUDGE_RULE]) + fake_backend("beta"))
    result = lok("debate", "--rounds", "1", "-b", "alpha,beta", topic)
    assert result.exit_code == 0, result.stderr
    openings = [c for c in calls(project) if "debating a question" in c["prompt"][:100]]
    assert len(openings) == 2
    assert all(f"\n\n{topic}\n\n" in c["prompt"] for c in openings)


def test_a_debate_is_a_run_listed_by_lok_runs(project: Path) -> None:
    configure(project, fake_backend("alpha", rules=[JUDGE_RULE]) + fake_backend("beta"))
    debate = json_of(lok("debate", "--json", "--rounds", "1", "-b", "alpha,beta", "Tabs?"))
    listed = lok("runs", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert debate["run_id"] in listed.stdout
    assert '"debate"' in listed.stdout


def test_a_debate_that_exits_1_is_listed_as_failed_with_its_reason(project: Path) -> None:
    configure(
        project,
        fake_backend("alpha", reply="tabs", rules=[JUDGE_RULE])
        + fake_backend("beta", fail_when="debat"),
    )
    result = lok("debate", "--json", "-b", "alpha,beta", "Tabs?")
    assert result.exit_code == 1
    run_id = json_of(result)["run_id"]
    listed = json.loads(lok("runs", "list", "--json").stdout)["runs"]
    (row,) = [r for r in listed if r["id"] == run_id]
    assert row["status"] == "failed"
    shown = json.loads(lok("runs", "show", "--json", run_id).stdout)
    assert shown["status"] == "failed"
    assert shown["error"] == "only 1 of 2 backends gave a position; a debate needs two"
    run_json = project / ".lok" / "runs" / run_id / "run.json"
    assert json.loads(run_json.read_text())["status"] == "failed"
