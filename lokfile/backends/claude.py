"""`type = "claude"`: the Claude Code CLI in print mode.

    claude -p --output-format json [--model M] [--append-system-prompt S] ARGS…   < prompt

The prompt goes on stdin. The CLI prints one JSON object; failures arrive on
stdout too, as `"subtype": "success", "is_error": true`, with the HTTP status
in `api_error_status`. Its own retries are capped (CLAUDE_CODE_MAX_RETRIES:
`max_retries`, else the variable's own value, else 0) so lok's deadline and
retry policy decide.

Config: `model`, `system` (appended to Claude Code's own system prompt; set
`system_mode = "replace"` to replace it), `args` (appended), `url` (sets
ANTHROPIC_BASE_URL), `api_key_env` (its value becomes ANTHROPIC_API_KEY),
`env` (extra variables), `max_retries`.
"""

from __future__ import annotations

import json
import os
from typing import Any

from lokfile.backends import registry, subproc
from lokfile.backends.agentcli import AgentCLI
from lokfile.backends.base import Answer, BackendError, ErrorKind, Request

DEFAULT_MAX_RETRIES = 0
# flags lok sets itself (configs written for the original or llm-mux repeat some)
LOK_FLAGS = {"-p": 0, "--print": 0, "--output-format": 1, "--": 0}


def kind_for_status(status: Any, message: str) -> ErrorKind:
    """ErrorKind from claude's `api_error_status` and result text."""
    text = message.lower()
    if status == 429:
        if "usage limit" in text or "spend limit" in text or "credit balance" in text:
            return ErrorKind.QUOTA
        return ErrorKind.RATE_LIMIT
    if status in (529, 503) or "overloaded" in text:
        return ErrorKind.OVERLOAD
    if status in (401, 403) or "not logged in" in text or "invalid api key" in text:
        return ErrorKind.AUTH
    if "credit balance" in text or "usage limit" in text:
        return ErrorKind.QUOTA
    if "unable to connect" in text or "connectionrefused" in text or "fetch failed" in text:
        return ErrorKind.NETWORK
    if status in (408, 504) or "timed out" in text:
        return ErrorKind.TIMEOUT
    return ErrorKind.FAILED


def last_json_object(text: str) -> dict[str, Any] | None:
    """The last line of `text` that is a JSON object (CLIs may print warnings first)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                return doc
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def claude_usage(doc: dict[str, Any]) -> dict[str, Any]:
    """Usage in lok's vocabulary from claude's result: `modelUsage` counts every model the
    query used (its side calls too, which `total_cost_usd` also covers), `usage` only the
    last turn's; cache reads and writes are counted apart from input there, within it here."""
    by_model: dict[str, dict[str, int]] = {}
    for model, m in (doc.get("modelUsage") or {}).items():
        if not isinstance(m, dict) or not any(k in m for k in ("inputTokens", "outputTokens")):
            continue
        read, wrote = _count(m, "cacheReadInputTokens"), _count(m, "cacheCreationInputTokens")
        by_model[str(model)] = {
            "input_tokens": _count(m, "inputTokens") + read + wrote,
            "output_tokens": _count(m, "outputTokens"),
            "cache_read_tokens": read,
            "cache_write_tokens": wrote,
        }
    if not by_model:
        u = doc.get("usage") or {}
        read, wrote = _count(u, "cache_read_input_tokens"), _count(u, "cache_creation_input_tokens")
        by_model[""] = {
            "input_tokens": _count(u, "input_tokens") + read + wrote,
            "output_tokens": _count(u, "output_tokens"),
            "cache_read_tokens": read,
            "cache_write_tokens": wrote,
        }
    usage: dict[str, Any] = {
        key: sum(m[key] for m in by_model.values()) for key in next(iter(by_model.values()))
    }
    if isinstance(doc.get("total_cost_usd"), (int, float)):
        usage["cost_usd"] = float(doc["total_cost_usd"])
    if len(by_model) > 1:
        usage["by_model"] = by_model
    return usage


def _count(doc: dict[str, Any], key: str) -> int:
    value = doc.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class ClaudeBackend(AgentCLI):
    """Runs the Claude Code CLI; see the module docstring."""

    type_name = "claude"
    program = "claude"
    lok_flags = LOK_FLAGS
    install = registry.install_hint("claude") or ""

    def _env(self) -> tuple[dict[str, str], str | None]:
        cfg = self.config
        extra: dict[str, str] = {}
        if "max_retries" in cfg.extra or "CLAUDE_CODE_MAX_RETRIES" not in os.environ:
            extra["CLAUDE_CODE_MAX_RETRIES"] = str(
                cfg.extra.get("max_retries", DEFAULT_MAX_RETRIES)
            )
        if cfg.url:
            extra["ANTHROPIC_BASE_URL"] = cfg.url
        return self._with_key(extra, "ANTHROPIC_API_KEY")

    def argv(self, request: Request) -> list[str]:
        """The command line (the prompt is not in it: it goes on stdin)."""
        cfg = self.config
        words, rest = subproc.split_args(cfg.args, LOK_FLAGS)
        argv = [*subproc.program_argv(cfg, self.program), *words, "-p", "--output-format", "json"]
        model = request.model or cfg.model
        if model:
            argv += ["--model", model]
        system = request.system or cfg.options.get("system")
        if system:
            flag = (
                "--system-prompt"
                if cfg.extra.get("system_mode") == "replace"
                else "--append-system-prompt"
            )
            argv += [flag, str(system)]
        return argv + rest

    def parse(self, done: subproc.Completed, key: str | None = None) -> Answer:
        """The answer in the CLI's output, or the classified failure."""
        doc = last_json_object(done.out)
        if doc is None:
            detail = subproc.first_line(done.err) or subproc.first_line(done.out)
            if done.returncode != 0:
                message = subproc.redact(
                    f"claude exited with code {done.returncode}: {detail}", [key]
                )
                return self._raise(kind_for_status(None, detail), message)
            raise BackendError(
                ErrorKind.BAD_RESPONSE, f"claude printed no JSON result: {detail[:120]}"
            )
        result = str(doc.get("result") or "")
        if (
            doc.get("is_error")
            or done.returncode != 0
            or doc.get("subtype") not in (None, "success")
        ):
            status = doc.get("api_error_status")
            detail = subproc.first_line(result) or str(
                doc.get("subtype") or f"exit code {done.returncode}"
            )
            label = f"claude API error {status}" if status else "claude failed"
            return self._raise(
                kind_for_status(status, result), subproc.redact(f"{label}: {detail}", [key])
            )
        models = list((doc.get("modelUsage") or {}).keys())
        return Answer(result, models[0] if models else self.config.model, claude_usage(doc))

    @staticmethod
    def _raise(kind: ErrorKind, message: str) -> Answer:
        raise BackendError(kind, message)
