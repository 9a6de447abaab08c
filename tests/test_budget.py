"""A plan before paying (`--dry-run` estimates) and a hard budget (`--max-cost`)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lokfile.reporters import money
from tests.lokrun import BUILTINS_OFF, lok, read_jsonl, run_json, write
from tests.servers.llm import LLMServer

# $1 a prompt word and $2 an answer word: the test backend counts tokens as words
PRICED = """
[backends.t]
type = "test"
reply = "one two three"
log_file = "calls.jsonl"
price = { input_per_mtok = 1000000, output_per_mtok = 2000000 }
"""
PER_CALL = 2 * 1 + 3 * 2  # "item X" in, "one two three" out: $8


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv


def looped(root: Path, items: int, config: str = PRICED) -> Path:
    """A workflow asking the priced test backend once per item; max_tokens is the
    answer's true length, so every estimate is exact."""
    (root / ".lok").mkdir(exist_ok=True)
    write(root, "lok.toml", BUILTINS_OFF + config)
    listing = " ".join(f"i{n}" for n in range(items))
    write(
        root,
        ".lok/workflows/loop.toml",
        f"""
        name = "loop"
        [[steps]]
        name = "each"
        for_each = "{{{{ '{listing}'.split() }}}}"
        backend = "t"
        max_tokens = 3
        prompt = "item {{{{ item }}}}"
    """,
    )
    return root


def calls(root: Path) -> list[dict[str, Any]]:
    return read_jsonl(root / "calls.jsonl")


# ----------------------------------------------------------- the plan


def openai_project(root: Path, server: LLMServer, prompt: str) -> Path:
    (root / ".lok").mkdir(exist_ok=True)
    write(
        root,
        "lok.toml",
        BUILTINS_OFF
        + f'[backends.oai]\ntype = "openai"\nurl = "{server.url}"\nmodel = "gpt-4o-mini"\n',
    )
    write(
        root,
        ".lok/workflows/ask.toml",
        f"""
        name = "ask"
        [[steps]]
        name = "q"
        backend = "oai"
        max_tokens = 50
        prompt = "{prompt}"
    """,
    )
    return root


def listed(**tokens: int) -> float:
    prices = pytest.importorskip("genai_prices", reason="genai-prices needs Python 3.11+")
    Usage, calc_price = prices.Usage, prices.calc_price

    return float(calc_price(Usage(**tokens), "gpt-4o-mini", provider_id="openai").total_price)


def test_a_dry_run_estimates_each_stale_call_and_sends_no_request(
    server: LLMServer, tmp_path: Path
) -> None:
    prompt = "<<usage:in=900,out=20>> " + "x" * 76  # 100 characters: 25 tokens by the rule
    root = openai_project(tmp_path, server, prompt)
    plan = run_json(root, "--dry-run", "ask")
    assert server.model_calls() == []
    estimate = plan["steps"][0]["estimate"]
    assert (estimate["input_tokens"], estimate["output_tokens"]) == (25, 50)
    assert estimate["input_from"].startswith("input: the prompt, about 4 characters")
    assert estimate["output_from"] == "output: max_tokens"
    assert estimate["cost_usd"] == pytest.approx(listed(input_tokens=25, output_tokens=50))
    assert plan["cost"]["stale_calls"] == 1
    assert plan["cost"]["estimated_usd"] == pytest.approx(estimate["cost_usd"])

    text = lok(root, "run", "--dry-run", "ask")
    assert server.model_calls() == []
    assert "q  never run  — about $0.000" in text.stdout
    assert "output: max_tokens" in text.stdout
    assert "the 1 stale call should cost about $0.000" in text.stderr.splitlines()[-1]

    assert run_json(root, "ask")["exit_code"] == 0  # the server reports 900 in, 20 out
    workflow = root / ".lok" / "workflows" / "ask.toml"
    workflow.write_text(workflow.read_text().replace("x" * 76, "x" * 116))  # 10 tokens more
    again = run_json(root, "--dry-run", "ask")
    estimate = again["steps"][0]["estimate"]
    assert (estimate["input_tokens"], estimate["output_tokens"]) == (900 + 10, 20)
    assert estimate["output_from"] == "output: the last answer's"
    assert len(server.model_calls()) == 1


def test_a_dry_run_says_which_steps_wait_for_upstream_answers(tmp_path: Path) -> None:
    root = looped(tmp_path, 1)
    write(
        root,
        ".lok/workflows/two.toml",
        """
        name = "two"
        [[steps]]
        name = "first"
        backend = "t"
        prompt = "a b"
        [[steps]]
        name = "second"
        backend = "t"
        depends_on = ["first"]
        prompt = "more {{ steps.first.output }}"
    """,
    )
    plan = run_json(root, "--dry-run", "two")
    assert plan["cost"]["stale_calls"] == 1
    assert plan["cost"]["estimated_usd"] == pytest.approx(1 * 1 + 1024 * 2)  # "a b": 1 token; the guess
    assert plan["cost"]["not_estimated"] == ["second"]
    assert plan["steps"][0]["estimate"]["output_from"].startswith("output: a guess of 1024")
    assert calls(root) == []


# ----------------------------------------------------------- the budget


@pytest.mark.parametrize(("cap", "jobs"), [(20.0, 4), (8.0, 1), (7.99, 2), (0.0, 3), (100, 8)])
def test_the_budget_stops_after_the_calls_it_can_pay_for_and_never_overspends(
    tmp_path: Path, cap: float, jobs: int
) -> None:
    root = looped(tmp_path, 5)
    proc = lok(root, "run", "--json", "-j", str(jobs), "--max-cost", str(cap), "loop")
    doc = json.loads(proc.stdout)
    affordable = min(5, math.floor(cap / PER_CALL))
    assert len(calls(root)) == affordable
    assert doc["cost"]["spent_usd"] == pytest.approx(affordable * PER_CALL)
    assert doc["cost"]["spent_usd"] <= cap
    assert doc["budget"]["max_cost_usd"] == cap
    if affordable == 5:
        assert proc.returncode == 0 and doc["budget"]["stopped"] is False
        return
    assert proc.returncode == 1
    assert doc["budget"]["stopped"] is True
    assert doc["budget"]["calls_not_made"] == 5 - affordable
    units = doc["steps"][0]["units"]
    assert [u["status"] for u in units].count("skipped") == 5 - affordable
    summary = proc.stderr.strip().splitlines()[-1]
    assert "stopped by the budget" in summary and f"of the {money(cap)} cap" in summary


def test_a_budget_in_config_holds_and_a_rerun_pays_only_for_what_is_left(tmp_path: Path) -> None:
    root = looped(tmp_path, 5, PRICED + "\n[budget]\nmax_cost_usd = 17\n")
    first = lok(root, "run", "loop")
    assert first.returncode == 1
    assert "stopped by the budget: $16.00 spent of the $17.00 cap" in first.stderr
    assert len(calls(root)) == 2
    write(root, "lok.toml", BUILTINS_OFF + PRICED)  # no cap now
    second = run_json(root, "loop")
    assert second["exit_code"] == 0
    assert (second["cost"]["calls"], second["cost"]["reused_calls"]) == (3, 2)
    assert second["cost"]["saved_usd"] == pytest.approx(2 * PER_CALL)
    assert len(calls(root)) == 5


def test_with_a_cap_an_unpriced_backend_fails_closed_before_any_call(
    server: LLMServer, tmp_path: Path
) -> None:
    (tmp_path / ".lok").mkdir()
    own = f'[backends.mine]\ntype = "ollama"\nurl = "{server.url}"\nmodel = "llama3.2"\n'
    write(tmp_path, "lok.toml", BUILTINS_OFF + PRICED + own)
    write(
        tmp_path,
        ".lok/workflows/mixed.toml",
        """
        name = "mixed"
        [[steps]]
        name = "paid"
        backend = "t"
        max_tokens = 3
        prompt = "first"
        [[steps]]
        name = "local"
        backend = "mine"
        prompt = "second"
    """,
    )
    proc = lok(tmp_path, "run", "--max-cost", "5", "mixed")
    assert proc.returncode == 2
    assert "step 'local' asks backend 'mine' (ollama, model llama3.2), which has no known" in (
        proc.stderr
    )
    assert "Hint: add price = { input_per_mtok" in proc.stderr
    assert "[backends.mine]" in proc.stderr and "Traceback" not in proc.stderr
    assert server.model_calls() == [] and calls(tmp_path) == []
    free = own + 'price = { input_per_mtok = 0, output_per_mtok = 0 }\n'
    write(tmp_path, "lok.toml", BUILTINS_OFF + PRICED + free)
    assert lok(tmp_path, "run", "--max-cost", "10", "mixed").returncode == 0
    assert len(server.model_calls()) == 1


def test_max_cost_is_a_non_negative_amount_and_not_for_watch(tmp_path: Path) -> None:
    root = looped(tmp_path, 1)
    bad = lok(root, "run", "--max-cost", "-1", "loop")
    assert bad.returncode == 2 and "--max-cost" in bad.stderr
    watch = lok(root, "run", "--watch", "--max-cost", "1", "loop")
    assert watch.returncode == 2
    assert "set [budget] max_cost_usd in lok.toml" in watch.stderr
    assert calls(root) == []
