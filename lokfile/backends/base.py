"""The backend contract: one method that answers a prompt.

A backend type is a class registered under a name (`claude`, `ollama`, …):
built-ins in `registry.BUILTINS`, plugins through the entry-point group
`lokfile.backends` (the entry point loads the class). Instances are made in
worker processes from a picklable `BackendConfig`, so a backend holds no state
that must cross a process boundary.

Errors:

    BackendError(kind, message, retry_after)
        kind is one of ErrorKind: rate_limit, overload, quota, auth,
        not_installed, network, timeout, bad_response, failed.
        `retryable` says whether trying again can help: not for quota, auth,
        not_installed, nor bad_response (the server answered, but with
        nothing lok can use: an unreadable body, an empty answer; asking
        again gets the same).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from lokfile.model import BackendConfig


class ErrorKind(str, enum.Enum):
    RATE_LIMIT = "rate_limit"
    OVERLOAD = "overload"
    QUOTA = "quota"
    AUTH = "auth"
    NOT_INSTALLED = "not_installed"
    NETWORK = "network"
    TIMEOUT = "timeout"
    BAD_RESPONSE = "bad_response"
    FAILED = "failed"

    @property
    def retryable(self) -> bool:
        return self not in (
            ErrorKind.AUTH, ErrorKind.QUOTA, ErrorKind.NOT_INSTALLED, ErrorKind.BAD_RESPONSE
        )


SUMMARIES = {
    ErrorKind.RATE_LIMIT: "rate limited (try again later or use fewer backends)",
    ErrorKind.OVERLOAD: "no capacity available (try again later)",
    ErrorKind.QUOTA: "quota exhausted (check your plan or billing)",
    ErrorKind.AUTH: "authentication failed (check your API credentials)",
    ErrorKind.NOT_INSTALLED: "not installed",
    ErrorKind.NETWORK: "network error (is the server running and reachable?)",
    ErrorKind.TIMEOUT: "timed out",
    ErrorKind.BAD_RESPONSE: "bad response (the answer could not be read)",
}


class BackendError(Exception):
    """A backend could not answer. Picklable: it crosses from workers to the coordinator."""

    def __init__(self, kind: ErrorKind, message: str, retry_after: float | None = None) -> None:
        super().__init__(kind, message, retry_after)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message

    def summary(self) -> str:
        """One line for a person: the class of failure, then the first line of the detail."""
        first = self.message.strip().splitlines()[0] if self.message.strip() else ""
        if len(first) > 120:
            first = first[:117] + "..."
        label = SUMMARIES.get(self.kind)
        if label and first:
            return f"{label}: {first}"
        return label or first or self.kind.value


@dataclass(frozen=True)
class Request:
    """One prompt for one backend. Per-step options override the backend's own."""

    prompt: str
    cwd: str
    system: str | None = None
    model: str | None = None
    temperature: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    timeout_s: float | None = None  # lok's own deadline for this attempt; backends must honour it
    # told each transport retry as one line of text (the live view shows it); never in a key
    notify: Callable[[str], None] | None = field(default=None, compare=False, repr=False)


USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


@dataclass(frozen=True)
class Answer:
    """An answer, the model that gave it, and what the call used.

    `usage` holds what the backend reported, in one vocabulary for every backend:
    `input_tokens` (every prompt token, cached or not), `output_tokens` (reasoning
    included), `cache_read_tokens` and `cache_write_tokens` (the parts of the input read
    from and written to a prompt cache), all ints and each absent when not reported;
    `cost_usd` when the backend reports its own cost (claude's `total_cost_usd`, 0 for a
    free backend); `by_model` ({model: the same counts}) when one query used several
    models. The engine prices it (lokfile/engine/cost.py).

    `truncated`: the server stopped at the token limit (max_tokens), so the text is cut.
    """

    text: str
    model: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False


@dataclass(frozen=True)
class Health:
    """What `lok doctor` shows for one backend."""

    ready: bool
    found: bool = True
    version: str | None = None
    detail: str = ""
    key_set: bool | None = None  # None: this backend needs no key


class Backend(Protocol):
    """What every backend type implements."""

    type_name: ClassVar[str]

    def __init__(self, config: BackendConfig) -> None: ...

    def query(self, request: Request) -> Answer:
        """Answer the prompt or raise BackendError. Must return before request.timeout_s."""
        ...

    def health(self, probe: bool = False) -> Health:
        """Is it installed / reachable / configured? With probe, send a one-line prompt."""
        ...
