"""`verify` after an edit step: keywords, project auto-detection, running the check.

Keywords (the original's, lower-cased and trimmed): `true` detects the
project; `false` or empty means none; `rust`, `go`/`golang`, `python`/`py`,
`node`/`nodejs`/`javascript`/`typescript`, `ruby` name a toolchain; anything
else is a shell command, run exactly once (the original also ran it a second
time as a "format" command).

A keyword may also carry a formatter. It runs only over the files the edits
touched, so everything it changes is inside the edit snapshot and a failed
step still leaves the tree as it was.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from lokfile.process.launch import launch, shown
from lokfile.process.run import run as run_command
from lokfile.stack import Stack, detect

OUTPUT_TAIL = 4000


@dataclass(frozen=True)
class Check:
    """What to run: a verify command (None = nothing) and a formatter prefix for files."""

    verify: str | None
    format_files: str | None = None  # e.g. "ruff format": the edited files are appended
    source: str = ""  # how it was chosen, for messages


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    error: str | None = None  # the failure, with the command's output tail
    timed_out: bool = False


_KEYWORDS: dict[str, tuple[str | None, str | None]] = {
    "rust": ("cargo clippy -- -D warnings && cargo build", "cargo fmt --"),
    "go": ("go vet ./... && go build ./...", "gofmt -w"),
    "python": ("ruff check .", "ruff format"),
    "node": ("npm run lint --if-present && npm run build --if-present", None),
    "ruby": ("bundle exec rubocop --lint", "bundle exec rubocop -a"),
}
_ALIASES = {
    "golang": "go",
    "py": "python",
    "nodejs": "node",
    "javascript": "node",
    "typescript": "node",
}


def resolve(value: str | None, root: Path) -> Check:
    """The check a `verify` value stands for in the project at `root`."""
    word = (value or "").strip().lower()
    if word in ("", "false"):
        return Check(None, source="none")
    if word == "true":
        return auto(detect(root))
    key = _ALIASES.get(word, word)
    if key in _KEYWORDS:
        command, fmt = _KEYWORDS[key]
        return Check(command, fmt, source=key)
    return Check((value or "").strip(), source="command")


def auto(stack: Stack) -> Check:
    """The check for a detected stack, as the original picked it; none when nothing fits."""
    lang = stack.language or ""
    if lang == "rust":
        return Check(*_KEYWORDS["rust"], source="detected rust")
    if lang == "go":
        parts = ["go vet ./..."]
        if stack.has("golangci"):
            parts.append("golangci-lint run")
        parts.append("go build ./...")
        return Check(" && ".join(parts), "gofmt -w", source="detected go")
    if lang.startswith("python"):
        if stack.has("ruff"):
            return Check("ruff check .", "ruff format", source="detected python (ruff)")
        if stack.has("mypy"):
            return Check("mypy .", None, source="detected python (mypy)")
        return Check(None, source="detected python, no checker")
    if lang in ("typescript", "javascript"):
        parts = []
        if stack.has("eslint"):
            parts.append("npm run lint --if-present")
        parts.append("npm run build --if-present")
        return Check(" && ".join(parts), None, source=f"detected {lang}")
    if lang.startswith("ruby"):
        parts = []
        if stack.has("rubocop"):
            parts.append("bundle exec rubocop --lint")
        if stack.has("rspec"):
            parts.append("bundle exec rspec --dry-run")
        fmt = "bundle exec rubocop -a" if stack.has("rubocop") else None
        return Check(" && ".join(parts) or None, fmt, source=f"detected {lang}")
    return Check(None, source="nothing detected")


def run(
    command: str, root: Path, timeout_s: float | None, wrapper: str | None = None
) -> CheckResult:
    """Run `command` with sh in `root` (inside the wrapper), its stderr merged into its
    output, through lokfile.process.run: its whole tree ends at the deadline."""
    try:
        started = launch(command, wrapper, root / ".lok" / "tmp")
    except ValueError as exc:
        return CheckResult(False, f"`{shown(command)}`: {exc}")
    try:
        return _run(started.argv, command, root, timeout_s)
    finally:
        started.done()


def _run(argv: list[str], command: str, root: Path, timeout_s: float | None) -> CheckResult:
    try:
        done = run_command(argv, cwd=root, merge_stderr=True, timeout_s=timeout_s)
    except OSError as exc:
        return CheckResult(False, f"cannot start sh: {exc}")
    if done.timed_out:
        return CheckResult(
            False, f"`{shown(command)}` timed out after {timeout_s:g}s", timed_out=True
        )
    if done.returncode == 0:
        return CheckResult(True)
    text = done.out.strip()
    if len(text) > OUTPUT_TAIL:
        text = "…\n" + text[-OUTPUT_TAIL:]
    code = done.returncode
    how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
    detail = f"`{shown(command)}` failed ({how})"
    return CheckResult(False, detail + ("\n" + text if text else ""))


def format_command(check: Check, files: list[str]) -> str | None:
    """The formatter over exactly `files` (relative paths), or None."""
    if not check.format_files or not files:
        return None
    return check.format_files + " " + " ".join(shlex.quote(f) for f in files)
