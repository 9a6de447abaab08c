"""`type = "test"`: a deterministic backend for lok's own tests and demos.

It is a test backend, never a default: a workflow reaches it only through a
`[backends.NAME] type = "test"` table. It answers by rule, with configurable
latency and failures, and can log every call so a test can count requests.

Keys (all optional):
    reply       format string; {prompt}, {name}, {model} are filled in
                (default "[{name}] {prompt}")
    rules       [{contains = "x", reply = "y"}, …]: first match wins
    latency_ms  sleep this long before answering
    fail_when   fail when the prompt contains this text
    fail_times  fail the first N calls for each distinct prompt (needs state_dir)
    fail_kind   the ErrorKind of those failures (default "failed")
    retry_after seconds, attached to those failures
    state_dir   folder for fail_times counters (shared between processes)
    log_file    append one JSON line per call: {"name", "prompt", "time"}

Usage: tokens are counted as words (system and prompt in, the reply out), and the
cost is 0 (it is free) unless the backend's `price` says otherwise.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import xxhash

from lokfile.backends.base import Answer, BackendError, ErrorKind, Health, Request
from lokfile.model import BackendConfig


class TestBackend:
    """Answers by rule; see the module docstring."""

    __test__ = False  # not a pytest test class
    type_name: ClassVar[str] = "test"

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.extra: dict[str, Any] = config.extra

    def query(self, request: Request) -> Answer:
        x = self.extra
        if x.get("log_file"):
            line = json.dumps(
                {"name": self.config.name, "prompt": request.prompt, "time": time.time()}
            )
            with open(x["log_file"], "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        latency = float(x.get("latency_ms", 0)) / 1000
        if latency:
            if request.timeout_s is not None and latency > request.timeout_s:
                time.sleep(request.timeout_s)
                raise BackendError(ErrorKind.TIMEOUT, f"no answer within {request.timeout_s:g}s")
            time.sleep(latency)
        self._maybe_fail(request.prompt)
        model = request.model or self.config.model
        template = str(x.get("reply", "[{name}] {prompt}"))
        for rule in x.get("rules", []):
            if str(rule.get("contains", "")) in request.prompt:
                template = str(rule.get("reply", ""))
                break
        text = self._fill(template, request.prompt, model)
        return Answer(text, model, self._usage(request, text))

    def _usage(self, request: Request, text: str) -> dict[str, Any]:
        """Tokens counted as words (system and prompt in, the reply out), at no cost."""
        prompt = f"{request.system or ''} {request.prompt}"
        return {
            "input_tokens": len(prompt.split()),
            "output_tokens": len(text.split()),
            "cost_usd": 0.0,
        }

    def _fill(self, template: str, prompt: str, model: str | None) -> str:
        return (
            template.replace("{prompt}", prompt)
            .replace("{name}", self.config.name)
            .replace("{model}", model or "")
        )

    def _maybe_fail(self, prompt: str) -> None:
        x = self.extra
        kind = ErrorKind(x.get("fail_kind", "failed"))
        retry_after = x.get("retry_after")
        when = x.get("fail_when")
        if when and str(when) in prompt:
            raise BackendError(
                kind, f"{self.config.name} failed: prompt matched '{when}'", retry_after
            )
        times = int(x.get("fail_times", 0))
        if times and x.get("state_dir"):
            counter = os.path.join(
                str(x["state_dir"]), xxhash.xxh3_64_hexdigest(prompt.encode()) + ".count"
            )
            seen = int(Path(counter).read_text()) if os.path.exists(counter) else 0
            with open(counter, "w") as fh:
                fh.write(str(seen + 1))
            if seen < times:
                raise BackendError(
                    kind,
                    f"{self.config.name} failed: attempt {seen + 1} of {times} planned failures",
                    retry_after,
                )

    def health(self, probe: bool = False) -> Health:
        if probe:
            self.query(Request(prompt="ping", cwd="."))
        return Health(ready=True, version="test", detail="deterministic test backend")
