"""Config keys every backend type accepts, whatever its type.

`config` validates `[backends.NAME]` tables against COMMON_KEYS plus the type's
own keys (`registry.extra_keys(type)`, beside the type's other traits); those
land in `BackendConfig.extra`. Plugin types (not built in) accept any extra key.
"""

from __future__ import annotations

COMMON_KEYS = frozenset({
    "type", "enabled", "command", "url", "args", "model", "api_key_env", "timeout",
    "concurrency", "skip_lines", "temperature", "seed", "max_tokens", "system", "num_ctx",
    "options",
})

# keys that are generation options (go to BackendConfig.options)
OPTION_KEYS = frozenset({"temperature", "seed", "max_tokens", "system", "num_ctx"})
