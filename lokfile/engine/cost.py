"""What a call cost: the usage a backend reported, priced in dollars.

A price comes from the first of:

    config        the backend's `price = { input_per_mtok, output_per_mtok, … }` (wins)
    backend       the backend's own report (`claude`'s total_cost_usd; 0 for the free
                  `test` and `local` backends)
    genai-prices  the maintained price database, its bundled data only (never a network
                  fetch), looked up by the model that answered, else the one asked for
    (none)        cost unknown: the call counts as unpriced, never as free

An Ollama server is the user's own, so it has no list price: only `price` prices it.
The `test` backend and the embedded `local` model are free (cost 0) unless priced.
A backend that reports no tokens (a `command`) is priced, when it has a `price`, on
tokens approximated from the text (`estimated`). genai-prices is imported only when a
call needs it, so a run that prices nothing (a no-op, config prices) never loads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lokfile.backends import registry
from lokfile.model import BackendConfig
from lokfile.outcome import NO_USAGE, Usage, total

CHARS_PER_TOKEN = 4  # the approximation when nothing better is known (English text, BPE)
_MISSING: list[bool] = []  # genai-prices is not installed (Python 3.10): asked once


def approx_tokens(text: str) -> int:
    """Tokens in `text`, approximated as one per four characters (at least one)."""
    return tokens_for_chars(len(text))


def tokens_for_chars(count: int) -> int:
    """Tokens in a text of `count` characters, at one per four (at least one)."""
    return max(1, -(-count // CHARS_PER_TOKEN)) if count else 0


def price_calls(
    calls: Iterable[dict[str, Any]],
    backend: BackendConfig | None,
    asked_model: str | None = None,
    texts: tuple[str, str] = ("", ""),
) -> Usage:
    """The usage of a job's calls, each priced (see the module docstring). `texts` (the
    prompt and the answer) approximate the tokens of a backend that reports none."""
    return total(price_call(c, backend, asked_model, texts) for c in calls)


def price_call(
    call: dict[str, Any],
    backend: BackendConfig | None,
    asked_model: str | None = None,
    texts: tuple[str, str] = ("", ""),
) -> Usage:
    """One call's usage and cost."""
    estimated = "input_tokens" not in call and "output_tokens" not in call
    base = Usage(
        calls=1,
        input_tokens=approx_tokens(texts[0]) if estimated else _int(call.get("input_tokens")),
        output_tokens=approx_tokens(texts[1]) if estimated else _int(call.get("output_tokens")),
        cache_read_tokens=_int(call.get("cache_read_tokens")),
        cache_write_tokens=_int(call.get("cache_write_tokens")),
        estimated=estimated,
    )
    price = backend.price if backend is not None else None
    if price:
        return base._replace(cost_usd=per_mtok(price, base), source="config")
    pricing, _provider = registry.pricing(backend.type) if backend is not None else ("list", None)
    if pricing == "free":  # lok's deterministic test backend, the embedded model
        return base._replace(cost_usd=0.0, source="backend")
    own = call.get("cost_usd")
    if isinstance(own, (int, float)) and not isinstance(own, bool) and not estimated:
        return base._replace(cost_usd=float(own), source="backend")
    if estimated or pricing == "none":
        return base._replace(unpriced_calls=1)
    models = [str(m) for m in (call.get("model"), asked_model, backend and backend.model) if m]
    cost = _listed(call, models, backend)
    if cost is None:
        return base._replace(unpriced_calls=1)
    return base._replace(cost_usd=cost, source="genai-prices")


def per_mtok(price: dict[str, float], usage: Usage) -> float:
    """Dollars for `usage` at `price` (dollars per million tokens); cache reads and writes
    at their own rates when given, else at the input rate."""
    inp = price["input_per_mtok"]
    read = price.get("cache_read_per_mtok", inp)
    wrote = price.get("cache_write_per_mtok", inp)
    plain = max(0, usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens)
    dollars = (
        plain * inp
        + usage.cache_read_tokens * read
        + usage.cache_write_tokens * wrote
        + usage.output_tokens * price["output_per_mtok"]
    )
    return dollars / 1_000_000


def _listed(call: dict[str, Any], models: list[str], backend: BackendConfig | None) -> float | None:
    """The list price of the call in genai-prices, or None when no model is known there."""
    parts = call.get("by_model")
    if isinstance(parts, dict) and parts:
        costs = [
            _lookup(part, [str(name), *models], backend)
            for name, part in parts.items()
            if isinstance(part, dict)
        ]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)
    return _lookup(call, models, backend)


def _lookup(counts: dict[str, Any], models: list[str], backend: BackendConfig | None) -> float | None:
    """The first of `models` genai-prices knows, priced for `counts`."""
    if _MISSING:
        return None
    try:
        from genai_prices import Usage as Counted
        from genai_prices import calc_price
    except ImportError:
        _MISSING.append(True)
        return None
    usage = Counted(
        input_tokens=_int(counts.get("input_tokens")),
        output_tokens=_int(counts.get("output_tokens")),
        cache_read_tokens=_int(counts.get("cache_read_tokens")),
        cache_write_tokens=_int(counts.get("cache_write_tokens")),
    )
    provider = registry.pricing(backend.type)[1] if backend is not None else None
    for model in dict.fromkeys(m for m in models if m):
        for hint in dict.fromkeys((provider, None)):
            try:
                found = calc_price(usage, model, provider_id=hint)
            except Exception:  # LookupError for an unknown model; the database's own bugs too
                continue
            return float(found.total_price)
    return None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


__all__ = ["NO_USAGE", "approx_tokens", "per_mtok", "price_call", "price_calls", "tokens_for_chars"]
