"""`lok runs show --html`: one self-contained page, checked from the DOM headless Chromium builds."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from lokfile.cli import cli
from tests.lokrun import run_json, write

CONFIG = """
[backends.alpha]
type = "test"
reply = "alpha thinks: {prompt}"

[backends.beta]
type = "test"
reply = "beta thinks: {prompt}"
latency_ms = 40
"""

WF = """
name = "review"
[[steps]]
name = "collect"
shell = "cat input.txt"
sources = ["input.txt"]

[[steps]]
name = "opinions"
backends = ["alpha", "beta"]
consensus = "first"
prompt = "review {{ steps.collect.output }}"
depends_on = ["collect"]

[[steps]]
name = "verdict"
shell = "echo verdict ready"
cache = true
depends_on = ["opinions"]
"""

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("LOK_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed and LOK_REQUIRE_BROWSER=1")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def dump_dom(page: Path, profile: Path) -> str:
    proc = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


class Dom(HTMLParser):
    """Elements as (tag, attrs, text inside), enough to query a page like a test would."""

    VOID = frozenset({"meta", "link", "br", "img", "input", "hr"})

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self.open: list[int] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, []))
        if tag not in self.VOID:
            self.open.append(len(self.elements) - 1)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, []))

    def handle_endtag(self, tag: str) -> None:
        opened = [i for i in self.open if self.elements[i][0] == tag]
        if opened:  # close it and anything left open inside it
            del self.open[self.open.index(opened[-1]) :]

    def handle_data(self, data: str) -> None:
        for index in self.open:
            self.elements[index][2].append(data)

    def find(self, cls: str | None = None, **attrs: str) -> list[tuple[dict[str, str], str]]:
        """Elements having class `cls` and these attributes (data_step= → data-step)."""
        want = {k.replace("_", "-"): v for k, v in attrs.items()}
        out = []
        for _tag, a, text in self.elements:
            if cls is not None and cls not in a.get("class", "").split():
                continue
            if all(a.get(k) == v for k, v in want.items()):
                out.append((a, "".join(text)))
        return out


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".lok").mkdir()
    write(tmp_path, "lok.toml", CONFIG)
    write(tmp_path, ".lok/workflows/review.toml", WF)
    write(tmp_path, "input.txt", "def add(a, b): return a - b  # <script>alert(1)</script>\n")
    assert run_json(tmp_path, "review")["status"] == "succeeded"
    return tmp_path


def show(root: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["-C", str(root), "runs", "show", *args])


def test_the_page_is_self_contained_and_escapes_step_output(project: Path) -> None:
    page = project / "report.html"
    result = show(project, "--html", str(page))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"Report written to {page}" in result.stderr
    markup = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", markup)
    assert "<script" not in markup.replace("&lt;script&gt;", "")
    assert "<link" not in markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup


@pytest.mark.browser
def test_the_report_renders_the_dag_timeline_outputs_and_answers_side_by_side(
    project: Path, tmp_path: Path
) -> None:
    page = project / "report.html"
    assert show(project, "--html", str(page)).exit_code == 0
    dom = Dom(dump_dom(page, tmp_path / "profile"))
    nodes = {a["data-step"]: (a["data-status"], text) for a, text in dom.find("node")}
    assert set(nodes) == {"collect", "opinions", "verdict"}
    assert all(status == "ran" for status, _ in nodes.values())
    assert "collect" in nodes["collect"][1] and "ran ·" in nodes["collect"][1]
    edges = {(a["data-from"], a["data-to"]) for a, _ in dom.find("edge")}
    assert edges == {("collect", "opinions"), ("opinions", "verdict")}
    bars = {a["data-step"] for a, _ in dom.find("bar")}
    assert bars == {"collect", "opinions", "verdict"}
    assert {a["data-step"] for a, _ in dom.find("unit")} == {"opinions"}
    [(_, collect)] = dom.find("step", id="step-collect")
    assert "def add(a, b): return a - b  # <script>alert(1)</script>" in collect
    [(_, opinions)] = dom.find("step", id="step-opinions")
    answers = {a["data-unit"]: text for a, text in dom.find("answer")}
    assert set(answers) == {"backend:alpha", "backend:beta"}
    assert "alpha thinks: review def add" in answers["backend:alpha"]
    assert "beta thinks: review def add" in answers["backend:beta"]
    assert answers["backend:beta"] in opinions  # the answers sit inside their step
    assert "verdict ready" in dom.find("step", id="step-verdict")[0][1]
    [(_, status)] = dom.find(None, id="run-status")
    assert status == "succeeded"


@pytest.mark.browser
def test_the_report_with_diff_shows_the_changed_step_and_its_lines(
    project: Path, tmp_path: Path
) -> None:
    write(project, "input.txt", "def add(a, b): return a + b\n")
    assert run_json(project, "review")["status"] == "succeeded"
    page = project / "diff.html"
    result = show(project, "latest", "--html", str(page), "--diff", "latest~1")
    assert result.exit_code == 0, result.output
    dom = Dom(dump_dom(page, tmp_path / "profile"))
    states = {a["data-step"]: a["data-state"] for a, _ in dom.find("d-changed")}
    states.update({a["data-step"]: a["data-state"] for a, _ in dom.find("d-same")})
    assert states == {"collect": "changed", "opinions": "changed", "verdict": "same"}
    [(_, collect)] = dom.find("stepdiff", data_step="collect")
    removed = [text for _, text in dom.find("del")]
    added = [text for _, text in dom.find("add")]
    assert any("return a - b" in t for t in removed)
    assert any("def add(a, b): return a + b" in t for t in added)
    assert "sources: input.txt" in dom.find("d-changed", data_step="collect")[0][1]
    assert "collect" in collect


def test_diff_without_html_is_bad_input(project: Path) -> None:
    result = show(project, "--diff", "latest")
    assert result.exit_code != 0
    assert "--diff goes with --html" in str(result.exception)
