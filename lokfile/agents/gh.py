"""`lok hunt --issues`: findings read out of a hunt's answers, filed as GitHub issues with gh.

A finding starts at a line that begins with a number ("1. …", "2) …") and has
more than 10 characters after it; its title is that text without Markdown
emphasis (cut to 80 characters), its body the non-empty lines up to the next
finding, as the original lok split a hunt's answers. An open or closed issue whose title contains
the finding's title (or the other way round, ignoring case) counts as a
duplicate and is skipped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lokfile.errors import UsageError

TITLE_MAX = 80
GH_TIMEOUT_S = 60
_START = re.compile(r"^\d+\s*[.)]?\s*")
_LOCATION = re.compile(r"\s*\(?[\w./-]+\.\w+:\d+(?:-\d+)?\)?\s*$")


@dataclass(frozen=True)
class Finding:
    title: str
    body: str


@dataclass(frozen=True)
class Filed:
    """What happened to one finding: created (with its URL), skipped, or failed."""

    finding: Finding
    status: str  # created | skipped | failed
    detail: str = ""  # URL, the similar issue's title, or the error


def clean_title(text: str) -> str:
    """A finding's title: no Markdown emphasis or heading marks, at most 80 characters."""
    title = text.replace("**", "").replace("##", "").strip().strip("*#").strip()
    if len(title) > TITLE_MAX:
        title = title[: TITLE_MAX - 3].rstrip() + "..."
    return title


def parse_findings(text: str, backend: str | None) -> list[Finding]:
    """The numbered findings in one answer."""
    found: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line[:1].isdigit():
            m = _START.match(line)
            rest = line[m.end() :] if m else line
            if len(rest) > 10:
                found.append((clean_title(rest), []))
                continue
        if line and found:
            found[-1][1].append(line)
    out = []
    footer = f"\n\n*Backend: {backend}*" if backend else ""
    for title, lines in found:
        body = "Found by `lok hunt`:\n\n" + "\n".join(lines) + footer
        out.append(Finding(title, body))
    return out


def dedupe(findings: list[Finding]) -> list[Finding]:
    """Findings with distinct titles (case-insensitive), first one kept."""
    seen: set[str] = set()
    out = []
    for f in findings:
        key = f.title.lower()
        if key and key not in seen:
            seen.add(key)
            out.append(f)
    return out


def _gh(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["gh", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=GH_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )


def require_gh(cwd: Path) -> str:
    """The repository gh will file issues in (`owner/name`); UsageError when gh cannot."""
    if shutil.which("gh") is None:
        raise UsageError(
            "--issues needs the GitHub CLI (gh), which is not on PATH",
            "install it from https://cli.github.com and run `gh auth login`",
        )
    done = _gh(["repo", "view", "--json", "nameWithOwner", "-q", ".nameWithOwner"], cwd)
    if done.returncode != 0 or not done.stdout.strip():
        first = (done.stderr.strip().splitlines() or ["no repository"])[0]
        raise UsageError(
            f"gh cannot tell which repository to file issues in: {first}",
            "run lok inside a clone of a GitHub repository, and `gh auth login`",
        )
    return done.stdout.strip()


def _core(title: str) -> str:
    """A title without its `(file:line)` location and code quotes: what to search for."""
    return _LOCATION.sub("", title).replace("`", "").strip().lower()


def similar_issue(finding: Finding, cwd: Path) -> str | None:
    """The title of an existing issue like this finding, or None."""
    mine = _core(finding.title)
    done = _gh(
        [
            "issue",
            "list",
            "--state",
            "all",
            "--search",
            f"{mine} in:title",
            "--json",
            "title",
            "--limit",
            "10",
        ],
        cwd,
    )
    if done.returncode != 0:
        return None
    try:
        issues = json.loads(done.stdout or "[]")
    except ValueError:
        return None
    for issue in issues:
        title = _core(str(issue.get("title", "")))
        if title and (title in mine or mine in title):
            return str(issue.get("title"))
    return None


def create_issue(finding: Finding, cwd: Path, label: str = "bug") -> Filed:
    """File one finding (with `label` when the repository has it); never a duplicate."""
    twin = similar_issue(finding, cwd)
    if twin is not None:
        return Filed(finding, "skipped", twin)
    base = ["issue", "create", "--title", finding.title, "--body", finding.body]
    done = _gh([*base, "--label", label], cwd)
    if done.returncode != 0 and "label" in done.stderr.lower():
        done = _gh(base, cwd)  # the label does not exist there: file it without
    if done.returncode != 0:
        error = (done.stderr.strip().splitlines() or [f"gh exited {done.returncode}"])[0]
        return Filed(finding, "failed", error)
    return Filed(finding, "created", done.stdout.strip().splitlines()[-1] if done.stdout else "")
