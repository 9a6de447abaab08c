"""Config keys each backend type accepts beyond the common ones.

`config` validates `[backends.NAME]` tables against COMMON_KEYS plus
EXTRA_KEYS[type]; the extra keys land in `BackendConfig.extra`. Plugin types
(not listed here) accept any extra key.
"""

from __future__ import annotations

COMMON_KEYS = frozenset({
    "type", "enabled", "command", "url", "args", "model", "api_key_env", "timeout",
    "concurrency", "skip_lines", "temperature", "seed", "max_tokens", "system", "num_ctx",
    "options",
})

# keys that are generation options (go to BackendConfig.options)
OPTION_KEYS = frozenset({"temperature", "seed", "max_tokens", "system", "num_ctx"})

EXTRA_KEYS: dict[str, frozenset[str]] = {
    "test": frozenset({
        "reply", "rules", "latency_ms", "fail_when", "fail_times", "fail_kind", "retry_after",
        "state_dir", "log_file",
    }),
    "command": frozenset({"prompt_via", "env"}),
    "claude": frozenset({"env", "max_retries", "system_mode"}),
    "codex": frozenset({"env"}),
    "gemini": frozenset({"env", "max_retries"}),
    "ollama": frozenset({"headers", "max_retries"}),
    "openai": frozenset({"headers", "max_retries"}),
    "anthropic": frozenset({"headers", "anthropic_version", "max_retries"}),
    "local": frozenset({"model_path", "n_ctx", "threads"}),
}
