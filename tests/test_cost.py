"""What each call cost and what reuse saved: usage from every wire protocol, priced.

The loopback server (tests/servers/llm.py) answers in each vendor's shape with the
token counts a prompt asks for (`<<usage:in=…,out=…,read=…,write=…>>`), so every
number here is one a backend read from a real usage field.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lokfile.backends import create
from lokfile.backends.base import Request
from lokfile.engine.cost import price_call
from lokfile.model import BackendConfig
from tests.lokrun import BUILTINS_OFF, lok, run_json, write
from tests.servers.llm import LLMServer

USAGE = "<<usage:in=1000,out=200,read=300,write=100>>"
KEY_ENV = {"LOK_TEST_ANTHROPIC_KEY": "sk-ant-loopback"}
ANT_PRICE = {
    "input_per_mtok": 3.0,
    "output_per_mtok": 15.0,
    "cache_read_per_mtok": 0.3,
    "cache_write_per_mtok": 3.75,
}


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv


def listed_price(model: str, provider: str, **tokens: int) -> float:
    """The bundled genai-prices figure, asked independently of lok."""
    prices = pytest.importorskip("genai_prices", reason="genai-prices needs Python 3.11+")
    Usage, calc_price = prices.Usage, prices.calc_price

    return float(calc_price(Usage(**tokens), model, provider_id=provider).total_price)


def http(kind: str, server: LLMServer, **kw: Any) -> Any:
    return create(BackendConfig(name=kind, type=kind, url=server.url, **kw))


def ask(backend: Any, prompt: str, tmp_path: Path) -> Any:
    return backend.query(Request(prompt=prompt, cwd=str(tmp_path), timeout_s=30))


# ----------------------------------------------------------- usage on the wire


def test_openai_usage_counts_cached_prompt_tokens(server: LLMServer, tmp_path: Path) -> None:
    answer = ask(http("openai", server, model="gpt-4o-mini"), f"{USAGE} hi", tmp_path)
    assert answer.usage == {"input_tokens": 1000, "output_tokens": 200, "cache_read_tokens": 300}


def test_anthropic_usage_adds_cache_reads_and_writes_to_the_input(
    server: LLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOK_TEST_ANTHROPIC_KEY", "sk-ant-loopback")
    backend = http("anthropic", server, api_key_env="LOK_TEST_ANTHROPIC_KEY")
    answer = ask(backend, f"{USAGE} hi", tmp_path)
    assert answer.usage == {
        "input_tokens": 1000,  # 600 uncached + 300 read + 100 written, as Anthropic splits them
        "output_tokens": 200,
        "cache_read_tokens": 300,
        "cache_write_tokens": 100,
    }


def test_ollama_usage_is_prompt_eval_count_and_eval_count(
    server: LLMServer, tmp_path: Path
) -> None:
    answer = ask(http("ollama", server), "<<usage:in=42,out=7>> hi", tmp_path)
    assert answer.usage == {"input_tokens": 42, "output_tokens": 7}


# ----------------------------------------------------------- pricing one call


def test_a_configured_price_wins_over_the_backends_own_report() -> None:
    backend = BackendConfig(name="c", type="claude", price=ANT_PRICE)
    call = {
        "input_tokens": 1000,
        "output_tokens": 200,
        "cache_read_tokens": 300,
        "cache_write_tokens": 100,
        "cost_usd": 99.0,
    }
    usage = price_call(call, backend)
    assert usage.source == "config"
    assert usage.cost == pytest.approx((600 * 3 + 300 * 0.3 + 100 * 3.75 + 200 * 15) / 1e6)


def test_a_clis_own_cost_comes_before_the_price_database() -> None:
    usage = price_call(
        {"input_tokens": 10, "output_tokens": 5, "cost_usd": 0.25, "model": "claude-sonnet-4-5"},
        BackendConfig(name="c", type="claude"),
    )
    assert (usage.cost, usage.source) == (0.25, "backend")


def test_an_unknown_model_is_unpriced_never_free() -> None:
    usage = price_call(
        {"input_tokens": 10, "output_tokens": 5, "model": "no-such-model-anywhere"},
        BackendConfig(name="o", type="openai"),
    )
    assert usage.cost is None and usage.unpriced_calls == 1
    assert usage.doc()["cost_usd"] is None


def test_a_command_backend_with_a_price_is_priced_on_approximated_tokens() -> None:
    backend = BackendConfig(
        name="cmd", type="command", price={"input_per_mtok": 1e6, "output_per_mtok": 1e6}
    )
    usage = price_call({"model": None}, backend, texts=("x" * 40, "y" * 8))
    assert (usage.input_tokens, usage.output_tokens, usage.estimated) == (10, 2, True)
    assert usage.cost == pytest.approx(12.0)


# ----------------------------------------------------------- through a run


def project_for(root: Path, server: LLMServer) -> Path:
    (root / ".lok").mkdir()
    write(
        root,
        "lok.toml",
        BUILTINS_OFF
        + f"""
[backends.oai]
type = "openai"
url = "{server.url}"
model = "gpt-4o-mini"

[backends.ant]
type = "anthropic"
url = "{server.url}"
api_key_env = "LOK_TEST_ANTHROPIC_KEY"
model = "claude-sonnet-4-5"
price = {{ input_per_mtok = 3.0, output_per_mtok = 15.0, cache_read_per_mtok = 0.3, cache_write_per_mtok = 3.75 }}

[backends.oll]
type = "ollama"
url = "{server.url}"
model = "llama3.2"
""",
    )
    write(
        root,
        ".lok/workflows/paid.toml",
        f"""
        name = "paid"
        [[steps]]
        name = "cheap"
        backend = "oai"
        prompt = "{USAGE} one"
        [[steps]]
        name = "cached"
        backend = "ant"
        prompt = "{USAGE} two"
        [[steps]]
        name = "own"
        backend = "oll"
        prompt = "<<usage:in=50,out=5>> three"
        [[steps]]
        name = "plain"
        shell = "echo not an llm"
        sources = ["lok.toml"]
    """,
    )
    return root


def by_step(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s["usage"] for s in doc["steps"]}


def test_each_step_has_its_tokens_and_cost_and_a_rerun_spends_nothing_and_saves_it_all(
    server: LLMServer, tmp_path: Path
) -> None:
    root = project_for(tmp_path, server)
    first = run_json(root, "paid", env=KEY_ENV)
    assert first["exit_code"] == 0, first
    usage = by_step(first)
    tokens = {"input_tokens": 1000, "output_tokens": 200, "cache_read_tokens": 300}
    cheap = listed_price("gpt-4o-mini", "openai", **tokens)
    assert usage["cheap"]["calls"] == 1
    assert (usage["cheap"]["input_tokens"], usage["cheap"]["output_tokens"]) == (1000, 200)
    assert usage["cheap"]["cost_usd"] == pytest.approx(cheap)
    assert usage["cheap"]["priced_by"] == "genai-prices"
    cached = (600 * 3 + 300 * 0.3 + 100 * 3.75 + 200 * 15) / 1e6
    assert usage["cached"]["cost_usd"] == pytest.approx(cached)
    assert usage["cached"]["cache_read_tokens"] == 300
    assert usage["cached"]["priced_by"] == "config"
    assert usage["own"]["cost_usd"] is None and usage["own"]["unpriced_calls"] == 1
    assert (usage["own"]["input_tokens"], usage["own"]["output_tokens"]) == (50, 5)
    assert usage["plain"] == {**usage["plain"], "calls": 0, "cost_usd": 0.0}
    cost = first["cost"]
    assert cost["spent_usd"] == pytest.approx(cheap + cached)
    assert (cost["calls"], cost["reused_calls"], cost["unpriced_calls"]) == (3, 0, 1)
    assert (cost["input_tokens"], cost["output_tokens"]) == (2050, 405)
    assert len(server.model_calls()) == 3

    again = run_json(root, "paid", env=KEY_ENV)  # the no-op fast path
    (tmp_path / "lok.toml").touch()  # a stat changed: the normal path, every key the same
    third = run_json(root, "paid", env=KEY_ENV)
    for doc in (again, third):
        assert {s["status"] for s in doc["steps"]} == {"reused"}
        assert doc["cost"]["spent_usd"] == 0.0 and doc["cost"]["calls"] == 0
        assert doc["cost"]["saved_usd"] == pytest.approx(cost["spent_usd"])
        assert doc["cost"]["reused_calls"] == 3
        assert doc["cost"]["unpriced_reused_calls"] == 1
        assert by_step(doc)["cached"]["cost_usd"] == pytest.approx(cached)
    assert len(server.model_calls()) == 3  # nothing was asked twice


def test_the_summary_line_and_the_history_show_the_money(
    server: LLMServer, tmp_path: Path
) -> None:
    root = project_for(tmp_path, server)
    first = lok(root, "run", "paid", env=KEY_ENV)
    assert first.returncode == 0, first.stderr
    summary = first.stderr.strip().splitlines()[-1]
    assert "— $0.00" in summary and " spent" in summary
    assert "1 call unpriced" in summary
    second = lok(root, "run", "paid", env=KEY_ENV)
    assert "— $0 spent, $0.00" in second.stderr and " saved" in second.stderr

    shown = json.loads(lok(root, "runs", "show", "latest~1", "--json").stdout)
    ran = run_json(root, "paid", "--dry-run", env=KEY_ENV)  # leaves the history alone
    assert ran["dry_run"] is True
    assert shown["cost"]["calls"] == 3
    assert shown["cost"]["spent_usd"] == pytest.approx(first_spent(root))
    calls = {s["name"]: s["usage"]["calls"] for s in shown["steps"]}
    assert calls == {"cheap": 1, "cached": 1, "own": 1, "plain": 0}
    latest = json.loads(lok(root, "runs", "show", "--json").stdout)
    assert latest["cost"]["spent_usd"] == 0.0
    assert latest["cost"]["saved_usd"] == pytest.approx(shown["cost"]["spent_usd"])

    listing = lok(root, "runs", "list").stdout.splitlines()
    assert "COST" in listing[0]
    assert "saved" in listing[1] and "$0" in listing[1]
    rows = json.loads(lok(root, "runs", "list", "--json").stdout)["runs"]
    assert rows[1]["cost"]["spent_usd"] == pytest.approx(shown["cost"]["spent_usd"])
    folder = json.loads((root / ".lok" / "runs" / shown["id"] / "run.json").read_text())
    assert folder["cost"] == shown["cost"]

    page = tmp_path / "report.html"
    assert lok(root, "runs", "show", "latest~1", "--html", str(page)).returncode == 0
    html = page.read_text()
    assert '<section id="costs">' in html
    row = html.split('<tr data-backend="oll">')[1].split("</tr>")[0]
    assert "price unknown" in row and "<td>50</td>" in row
    total = html.split('data-by="backend"')[1].split('<tr class="total">')[1].split("</tr>")[0]
    assert "<td>3</td>" in total and "1 unpriced" in total


def first_spent(root: Path) -> float:
    """What the first run spent, read straight from the history database."""
    import sqlite3

    conn = sqlite3.connect(root / ".lok" / "lok.db")
    try:
        (text,) = conn.execute("SELECT cost FROM runs ORDER BY started LIMIT 1").fetchone()
    finally:
        conn.close()
    spent: float = json.loads(text)["spent_usd"]
    return spent


def test_the_test_backend_reports_words_as_tokens_at_no_cost(tmp_path: Path) -> None:
    (tmp_path / ".lok").mkdir()
    write(tmp_path, "lok.toml", BUILTINS_OFF + '[backends.t]\ntype = "test"\nreply = "a b c"\n')
    write(
        tmp_path,
        ".lok/workflows/free.toml",
        """
        name = "free"
        [[steps]]
        name = "s"
        backend = "t"
        prompt = "four words right here"
    """,
    )
    doc = run_json(tmp_path, "free")
    usage = by_step(doc)["s"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["cost_usd"]) == (4, 3, 0.0)
    assert doc["cost"]["spent_usd"] == 0.0 and doc["cost"]["unpriced_calls"] == 0


def test_a_bad_price_is_one_clear_line_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / ".lok").mkdir()
    write(tmp_path, "lok.toml", '[backends.t]\ntype = "test"\nprice = { input_per_mtok = 3 }\n')
    write(tmp_path, ".lok/workflows/w.toml", 'name = "w"\n[[steps]]\nname = "s"\nshell = "true"\n')
    proc = lok(tmp_path, "run", "w")
    assert proc.returncode == 2
    assert "price must be a table with output_per_mtok" in proc.stderr
    assert "lok.toml" in proc.stderr and "Traceback" not in proc.stderr


def test_genai_prices_is_not_imported_by_a_run_that_prices_nothing(tmp_path: Path) -> None:
    (tmp_path / ".lok").mkdir()
    write(tmp_path, "lok.toml", BUILTINS_OFF + '[backends.t]\ntype = "test"\n')
    write(
        tmp_path,
        ".lok/workflows/w.toml",
        'name = "w"\n[[steps]]\nname = "s"\nbackend = "t"\nprompt = "p"\n',
    )
    probe = (  # lokfile.__main__.main, the command's entry without its early exit
        "import sys\n"
        "from lokfile.__main__ import main\n"
        "sys.argv = ['lok', 'run', 'w']\n"
        "try:\n    main()\n"
        "except SystemExit:\n    pass\n"
        "print('genai_prices' in sys.modules, file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.stderr.strip().splitlines()[-1] == "False", proc.stderr
