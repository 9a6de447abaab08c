"""Durations as people write them: `90s`, `5m`, `1h30m`, `500ms`, or a bare number.

Workflow files count bare numbers in milliseconds and config files in seconds
(the original's units, kept for compatibility); strings carry their own unit so
either file can say `"90s"` and mean it.
"""

from __future__ import annotations

import re

_UNIT_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)", re.IGNORECASE)
_NUMBER = re.compile(r"\s*(\d+(?:\.\d+)?)\s*")

EXPECTED_MS = 'milliseconds (an integer) or a duration such as "500ms", "90s", "5m"'
EXPECTED_S = 'seconds (a number) or a duration such as "90s", "5m", "1h"'


class DurationError(ValueError):
    """The value is not a duration; the message says what was expected."""


def _string_ms(text: str) -> float:
    """Milliseconds in a duration string with units (`1m30s`); DurationError otherwise."""
    pos, total, matched = 0, 0.0, False
    while pos < len(text):
        part = _PART.match(text, pos)
        if part is None:
            break
        total += float(part.group(1)) * _UNIT_MS[part.group(2).lower()]
        pos, matched = part.end(), True
    if matched and not text[pos:].strip():
        return total
    raise DurationError(f'"{text}" is not a duration')


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_ms(value: object) -> int:
    """A workflow duration in milliseconds: an int (ms) or a string with units.

    Bare numeric strings (`"1500"`) count as milliseconds too, as the number would.
    """
    if _is_number(value):
        number = float(value)  # type: ignore[arg-type]
    elif isinstance(value, str):
        bare = _NUMBER.fullmatch(value)
        number = float(bare.group(1)) if bare else _string_ms(value)
    else:
        raise DurationError(f"expected {EXPECTED_MS}")
    if number < 0 or number != number or number == float("inf"):
        raise DurationError(f"expected a non-negative duration, got {value!r}")
    return round(number)


def parse_seconds(value: object) -> float:
    """A config duration in seconds: a number (seconds) or a string with units."""
    if _is_number(value):
        number = float(value)  # type: ignore[arg-type]
    elif isinstance(value, str):
        bare = _NUMBER.fullmatch(value)
        number = float(bare.group(1)) if bare else _string_ms(value) / 1000.0
    else:
        raise DurationError(f"expected {EXPECTED_S}")
    if number < 0 or number != number or number == float("inf"):
        raise DurationError(f"expected a non-negative duration, got {value!r}")
    return number


def format_ms(ms: int) -> str:
    """A short human form of a millisecond count: `500ms`, `90s`, `5m`, `1h30m`."""
    if ms == 0:
        return "0"
    if ms % 1000:
        return f"{ms}ms"
    seconds = ms // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts)
