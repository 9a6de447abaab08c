"""`samples = N`: one prompt asked N times, each sample its own cached, keyed answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lokrun import BUILTINS_OFF, lok, run_json, write
from tests.servers.llm import LLMServer


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv


def sampled(root: Path, server: LLMServer, n: int, extra: str = "") -> Path:
    (root / ".lok").mkdir(exist_ok=True)
    write(
        root,
        "lok.toml",
        BUILTINS_OFF
        + f'[backends.oai]\ntype = "openai"\nurl = "{server.url}"\nmodel = "gpt-4o-mini"\n',
    )
    write(
        root,
        ".lok/workflows/s.toml",
        f"""
        name = "s"
        [[steps]]
        name = "idea"
        backend = "oai"
        prompt = "name a colour"
        samples = {n}
        seed = 7
        {extra}
        [[steps]]
        name = "count"
        depends_on = ["idea"]
        shell = "printf '%s' {{{{ steps.idea.output }}}}"
    """,
    )
    return root


def test_n_samples_are_n_calls_a_json_array_and_each_is_cached_by_its_index(
    server: LLMServer, tmp_path: Path
) -> None:
    root = sampled(tmp_path, server, 3)
    doc = run_json(root, "s")
    assert doc["exit_code"] == 0, doc
    idea = doc["steps"][0]
    rows = json.loads(idea["output"])
    assert [(r["index"], r["success"]) for r in rows] == [(0, True), (1, True), (2, True)]
    assert all(r["output"] == "echo: name a colour" for r in rows)
    assert [u["unit"] for u in idea["units"]] == ["sample:0", "sample:1", "sample:2"]
    assert sorted(c.body["seed"] for c in server.model_calls()) == [7, 8, 9]  # one seed each
    assert idea["usage"]["calls"] == 3
    assert (root / ".lok" / "runs" / doc["run_id"] / "idea.json").exists()

    again = run_json(root, "s")
    assert again["steps"][0]["status"] == "reused"
    assert json.loads(again["steps"][1]["output"]) == rows  # downstream reads the array
    assert len(server.model_calls()) == 3

    more = sampled(tmp_path, server, 5)
    grown = run_json(more, "s")
    units = {u["unit"]: u["status"] for u in grown["steps"][0]["units"]}
    assert units == {
        "sample:0": "reused",
        "sample:1": "reused",
        "sample:2": "reused",
        "sample:3": "ran",
        "sample:4": "ran",
    }
    assert len(server.model_calls()) == 5  # two new samples, two new calls
    assert len(json.loads(grown["steps"][0]["output"])) == 5


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ('for_each = "{{ [1, 2] }}"', "each loop item is asked once"),
        ("apply_edits = true", "one answer edits the files"),
        ('backends = ["oai", "oai2"]', "several backends each answer once"),
    ],
)
def test_samples_with_what_it_cannot_go_with_is_one_clear_error(
    server: LLMServer, tmp_path: Path, extra: str, why: str
) -> None:
    root = sampled(tmp_path, server, 2, extra)
    with (root / "lok.toml").open("a") as fh:
        fh.write(f'[backends.oai2]\ntype = "openai"\nurl = "{server.url}"\n')
    proc = lok(root, "run", "s")
    assert proc.returncode == 2, proc.stderr
    assert f"step 'idea': samples asks one backend several times, but {why}" in proc.stderr
    assert "s.toml" in proc.stderr and "Traceback" not in proc.stderr
    assert server.model_calls() == []
