"""`type = "gemini"`: the Gemini CLI, non-interactive.

    gemini -o json [-m M] ARGS…   < prompt

With stdin not a terminal and no `-p`, the CLI answers the prompt it reads
there and exits. Success is `{"response": …}` on stdout; a failure is a JSON
`{"error": {"message", "code"}}` on stderr and an exit code that is the HTTP
status mod 256 (429→173, 503→247, 500→244, 401→145).

Its retries (about 3.5 minutes on a dead server) are capped through a
settings file lok writes (`general.maxAttempts` = `max_retries` + 1, default
1), handed over as GEMINI_CLI_SYSTEM_DEFAULTS_PATH so a user's own settings
still win. With `url` (GOOGLE_GEMINI_BASE_URL) the same file selects API-key
auth, which that mode needs. The workspace is trusted for the run
(GEMINI_CLI_TRUST_WORKSPACE), as lok runs it where the user asked.

Config: `model`, `system` (prepended to the prompt: the CLI has no flag for
it), `args`, `url`, `api_key_env` (its value becomes GEMINI_API_KEY), `env`,
`max_retries`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from lokfile.backends import registry, subproc
from lokfile.backends.agentcli import AgentCLI
from lokfile.backends.base import Answer, BackendError, ErrorKind, Request

DEFAULT_MAX_RETRIES = 0
# flags lok sets itself; leading words stay with the command (`npx @google/gemini-cli`)
LOK_FLAGS = {"-o": 1, "--output-format": 1, "-p": 1, "--prompt": 1}
VERSION_TIMEOUT_S = 10.0  # a JS bundle: about 1 s idle, several when the CPU is busy
_STATUS_BY_EXIT = {173: 429, 247: 503, 244: 500, 145: 401, 147: 403, 148: 404, 248: 504}


def kind_for(status: int | None, message: str) -> ErrorKind:
    """ErrorKind from the HTTP status Gemini reports and its message."""
    text = message.lower()
    if status == 429 or "resource has been exhausted" in text:
        return (
            ErrorKind.QUOTA
            if "quota exceeded for metric" in text or "perday" in text
            else ErrorKind.RATE_LIMIT
        )
    if status in (503, 529) or "overloaded" in text:
        return ErrorKind.OVERLOAD
    if status in (401, 403, 41) or "api key not valid" in text or "auth method" in text:
        return ErrorKind.AUTH
    if "fetch failed" in text or "econnrefused" in text:
        return ErrorKind.NETWORK
    if status in (408, 504):
        return ErrorKind.TIMEOUT
    return ErrorKind.FAILED


def json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object that starts a line of `text` (stderr mixes them with log noise)."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.startswith("{"):
            try:
                doc, _ = decoder.raw_decode(text, offset)
            except ValueError:
                doc = None
            if isinstance(doc, dict):
                found.append(doc)
        offset += len(line)
    return found


def settings_dir() -> Path:
    """Where lok keeps the settings files it hands to the Gemini CLI.

    Gemini refuses settings whose folders others can write (so not /tmp):
    lok's cache folder, created private.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "lok" / "gemini"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def settings_file(settings: dict[str, Any]) -> str:
    """A settings.json holding `settings`, named by its content (written once, reused)."""
    text = json.dumps(settings, sort_keys=True)

    name = "settings-" + hashlib.sha256(text.encode()).hexdigest()[:16] + ".json"
    path = settings_dir() / name
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return str(path)


class GeminiBackend(AgentCLI):
    """Runs the Gemini CLI; see the module docstring."""

    type_name = "gemini"
    program = "gemini"
    lok_flags = LOK_FLAGS
    install = registry.install_hint("gemini") or ""
    version_timeout_s = VERSION_TIMEOUT_S

    def settings(self) -> dict[str, Any]:
        """What lok's settings file says for this backend."""
        attempts = int(self.config.extra.get("max_retries", DEFAULT_MAX_RETRIES)) + 1
        doc: dict[str, Any] = {"general": {"maxAttempts": attempts}}
        if self.config.url:
            doc["security"] = {"auth": {"selectedType": "gemini-api-key"}}
        return doc

    def _env(self) -> tuple[dict[str, str], str | None]:
        cfg = self.config
        extra: dict[str, str] = {"GEMINI_CLI_TRUST_WORKSPACE": "true", "NO_COLOR": "1"}
        if "GEMINI_CLI_SYSTEM_DEFAULTS_PATH" not in os.environ:
            # Without a private folder the CLI keeps its defaults; lok's deadline still holds.
            with contextlib.suppress(OSError):
                extra["GEMINI_CLI_SYSTEM_DEFAULTS_PATH"] = settings_file(self.settings())
        if cfg.url:
            extra["GOOGLE_GEMINI_BASE_URL"] = cfg.url.rstrip("/")
        return self._with_key(extra, "GEMINI_API_KEY")

    def argv(self, request: Request) -> list[str]:
        """The command line (the prompt goes on stdin)."""
        cfg = self.config
        words, rest = subproc.split_args(cfg.args, LOK_FLAGS)
        argv = [*subproc.program_argv(cfg, self.program), *words, "-o", "json"]
        model = request.model or cfg.model
        if model:
            argv += ["-m", model]
        return argv + rest

    def prompt_text(self, request: Request) -> str:
        """The prompt, with the system text in front (the CLI has no system flag)."""
        system = request.system or self.config.options.get("system")
        return f"{system}\n\n{request.prompt}" if system else request.prompt

    def parse(self, done: subproc.Completed, key: str | None = None) -> Answer:
        """The response, or the classified failure."""
        answers = [d for d in json_objects(done.out) if "response" in d or "error" in d]
        errors = [d for d in json_objects(done.err) if isinstance(d.get("error"), dict)]
        doc = answers[-1] if answers else None
        if done.returncode == 0 and doc is not None and "response" in doc and not doc.get("error"):
            usage = _usage(doc)
            models = list(usage.get("by_model") or ())
            model = self.config.model or (models[0] if len(models) == 1 else None)
            if len(models) == 1:
                usage.pop("by_model")
            return Answer(str(doc.get("response") or ""), model, usage)
        error: dict[str, Any] = {}
        if doc is not None and isinstance(doc.get("error"), dict):
            error = doc["error"]
        elif errors:
            error = errors[-1]["error"]
        code = error.get("code")
        status = code if isinstance(code, int) else _STATUS_BY_EXIT.get(done.returncode)
        message = str(error.get("message") or "") or subproc.first_line(done.err)
        if done.returncode == 0 and not message:
            raise BackendError(
                ErrorKind.BAD_RESPONSE, f"gemini printed no JSON response: {done.out[:120]!r}"
            )
        detail = subproc.first_line(message) or f"exit code {done.returncode}"
        label = f"gemini API error {status}" if status and status >= 100 else "gemini failed"
        raise BackendError(kind_for(status, message), subproc.redact(f"{label}: {detail}", [key]))


def _usage(doc: dict[str, Any]) -> dict[str, Any]:
    """Usage from the CLI's `stats.models`: per model, `prompt` holds every input token
    (`cached` is part of it) and the answer is `candidates` plus `thoughts`."""
    by_model: dict[str, dict[str, int]] = {}
    for name, m in ((doc.get("stats") or {}).get("models") or {}).items():
        tokens = (m.get("tokens") if isinstance(m, dict) else None) or {}
        count = {k: int(v) for k, v in tokens.items() if isinstance(v, int)}
        part = {
            "input_tokens": count.get("prompt", 0),
            "output_tokens": count.get("candidates", 0) + count.get("thoughts", 0),
        }
        if "cached" in count:
            part["cache_read_tokens"] = count["cached"]
        by_model[str(name)] = part
    if not by_model:
        return {}  # no counts reported
    keys = dict.fromkeys(k for m in by_model.values() for k in m)
    usage: dict[str, Any] = {k: sum(m.get(k, 0) for m in by_model.values()) for k in keys}
    usage["by_model"] = by_model
    return usage
