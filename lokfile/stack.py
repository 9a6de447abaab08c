"""What a project is built with, read from its top-level files.

Used to pick the `verify = "true"` command of an edit step and to add short
context notes to the hunt and audit prompts. Only the project folder itself is
read (not recursively): detection has to be instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Stack:
    """The detected language (first found wins: ruby, js/ts, python, rust, go) and tools."""

    language: str | None = None
    tools: frozenset[str] = field(default_factory=frozenset)
    infra: tuple[str, ...] = ()

    def has(self, tool: str) -> bool:
        """True when `tool` was detected."""
        return tool in self.tools


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:200_000]
    except OSError:
        return ""


def _ruby(root: Path, tools: set[str]) -> str | None:
    gemfile = _read(root / "Gemfile")
    if not gemfile:
        return None
    for gem in ("rails", "goldiloader", "bullet", "brakeman", "rubocop", "rspec", "sidekiq"):
        if gem in gemfile:
            tools.add(gem)
    if "rails" in tools:
        return "ruby/rails"
    return "ruby" if "gem " in gemfile else None


def _node(root: Path, tools: set[str]) -> str | None:
    package = _read(root / "package.json")
    if not package:
        return None
    typescript = "typescript" in package or (root / "tsconfig.json").is_file()
    if "eslint" in package or (root / ".eslintrc").exists() or _any(root, "eslint.config"):
        tools.add("eslint")
    if "prettier" in package or _any(root, ".prettierrc"):
        tools.add("prettier")
    for name in ("jest", "react", "vue", "next"):
        if f'"{name}"' in package:
            tools.add(name)
    if "vitest" in package:
        tools.add("vitest")
    return "typescript" if typescript else "javascript"


def _python(root: Path, tools: set[str]) -> str | None:
    names = ("requirements.txt", "pyproject.toml", "setup.py")
    text = "\n".join(_read(root / n) for n in names if (root / n).is_file())
    if not any((root / n).is_file() for n in names):
        return None
    if (root / "ruff.toml").is_file() or (root / ".ruff.toml").is_file():
        tools.add("ruff")
    if (root / "mypy.ini").is_file():
        tools.add("mypy")
    for tool in ("django", "fastapi", "sqlalchemy", "pytest", "mypy", "ruff", "alembic"):
        if tool in text:
            tools.add(tool)
    if "django" in tools:
        return "python/django"
    if "fastapi" in tools:
        return "python/fastapi"
    return "python"


def _rust(root: Path, tools: set[str]) -> str | None:
    cargo = _read(root / "Cargo.toml")
    if not (root / "Cargo.toml").is_file():
        return None
    for crate in ("tokio", "diesel", "sqlx"):
        if crate in cargo:
            tools.add(crate)
    return "rust"


def _go(root: Path, tools: set[str]) -> str | None:
    if not (root / "go.mod").is_file():
        return None
    if (
        (root / ".golangci.yml").is_file()
        or (root / ".golangci.yaml").is_file()
        or "golangci" in _read(root / "go.mod")
    ):
        tools.add("golangci")
    return "go"


def _any(root: Path, prefix: str) -> bool:
    try:
        return any(p.name.startswith(prefix) for p in root.iterdir())
    except OSError:
        return False


def detect(root: Path) -> Stack:
    """The stack of the project in `root` (every detector runs; the first language wins)."""
    tools: set[str] = set()
    language = None
    for detector in (_ruby, _node, _python, _rust, _go):
        found = detector(root, tools)
        language = language or found
    infra = []
    if (root / "Dockerfile").is_file() or (root / "docker-compose.yml").is_file():
        infra.append("docker")
    if any((root / d).exists() for d in ("k8s", "kubernetes", "helm")):
        infra.append("kubernetes")
    if (root / "main.tf").is_file() or (root / "terraform").exists():
        infra.append("terraform")
    if (root / ".github" / "workflows").is_dir():
        infra.append("github-actions")
    if (root / ".gitlab-ci.yml").is_file():
        infra.append("gitlab-ci")
    return Stack(language, frozenset(tools), tuple(infra))


def describe(stack: Stack) -> str:
    """One line naming the stack, for prompts ('python (pytest, ruff); docker')."""
    if stack.language is None and not stack.infra:
        return "unknown"
    parts = [stack.language or "unknown language"]
    if stack.tools:
        parts[0] += " (" + ", ".join(sorted(stack.tools)) + ")"
    if stack.infra:
        parts.append(", ".join(stack.infra))
    return "; ".join(parts)


def prompt_notes(stack: Stack, task: str, prompt_name: str) -> str:
    """Context notes for a task prompt: N+1 tools for query prompts, checkers for security."""
    notes = []
    lowered = prompt_name.lower()
    if any(w in lowered for w in ("n+1", "n-plus", "query")):
        if stack.has("goldiloader"):
            notes.append("Goldiloader is installed: most N+1 queries are loaded automatically.")
        if stack.has("bullet"):
            notes.append("Bullet is installed and reports N+1 queries in development.")
    security = ("audit" in task or "security" in task) or any(
        w in lowered for w in ("injection", "xss", "auth", "security")
    )
    if security:
        checkers = [
            name
            for tool, name in (
                ("brakeman", "Brakeman"),
                ("eslint", "ESLint"),
                ("rubocop", "RuboCop"),
                ("mypy", "mypy"),
            )
            if stack.has(tool)
        ]
        if checkers:
            notes.append(
                "Already checked by " + ", ".join(checkers) + ": focus on what they cannot see."
            )
        if stack.language in ("typescript", "rust", "go"):
            notes.append("The language is statically typed: skip type-confusion findings.")
    if not notes:
        return ""
    return "CODEBASE CONTEXT:\n" + "\n".join(f"- {n}" for n in notes)
