"""Transport retries: a server's transient answer is asked again, a few times.

    POST ── 429, Retry-After: 1 ──► wait 1 s ──► POST ── 200 ✓ (the step never saw the 429)

A rate limit (429), an overload (503, 529, "overloaded") or a connection lost
mid-exchange says "not now", not "no": every HTTP backend retries it by itself,
honouring the server's Retry-After, at most `max_retries` times (default 3),
waiting at most TOTAL_WAIT_S in all, and never past lok's deadline for the
call. What cannot succeed by waiting — quota exhausted, authentication, a
server that is not there at all, a bad request — is raised at once.

This is below a step's own `retries` (which repeat the whole step, edits and
verify included, and count against nothing here): a call that exhausts its
transport retries fails with the last error, and the step's policy decides.
Each wait is announced through `notify`, so the live view shows it.

How long a server asks to wait is read by `httpwire.parse_retry_after` (the
longest of the standard headers, a gateway's `llm_provider-` ones, OpenAI's
x-ratelimit-reset-*, and the body's "try again in N seconds"); a new hint
belongs there. A named wait is never cut short: lok asks again no sooner, and
when it is longer than lok would wait the call fails at once, saying so.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from lokfile.backends.base import BackendError, ErrorKind
from lokfile.model import BackendConfig

T = TypeVar("T")
DEFAULT_RETRIES = 3
TOTAL_WAIT_S = 60.0  # all the waits of one call together
BASE_DELAY_S = 1.0  # without Retry-After: 1 s, 2 s, 4 s … (+0–20 % jitter)
MAX_DELAY_S = 30.0  # one wait; a longer Retry-After is not waited for

Notify = Callable[[str], None]


def transient(error: BackendError) -> bool:
    """Can asking again soon succeed? Rate limits, overloads and lost connections."""
    if error.kind in (ErrorKind.RATE_LIMIT, ErrorKind.OVERLOAD):
        return True
    # "cannot connect": nobody listens there, waiting will not start the server
    return error.kind is ErrorKind.NETWORK and not error.message.startswith("cannot connect")


def max_retries(config: BackendConfig) -> int:
    """The backend's `max_retries` (transport retries), else DEFAULT_RETRIES."""
    value = config.extra.get("max_retries")
    return DEFAULT_RETRIES if value is None else max(0, int(value))


def backoff(base_s: float, retry: int, cap_s: float) -> float:
    """Wait before retry number `retry` (1-based): base·2^(n-1), capped, +0–20 % jitter."""
    delay: float = min(cap_s, base_s * (2 ** (retry - 1))) * (1 + random.random() * 0.2)
    return delay


def next_wait(
    exc: BackendError, retry: int, retries: int, waited: float, deadline: float | None
) -> float:
    """Seconds to wait before asking again after `exc` (the `retry`-th retry, 1-based,
    `waited` seconds waited so far), or raise: `exc` itself when it cannot succeed by
    waiting or the wait would not fit, a clearer error when the server named a wait
    longer than lok waits."""
    if not transient(exc) or retry > retries:
        raise exc
    delay = exc.retry_after
    if delay is None:
        delay = backoff(BASE_DELAY_S, retry, MAX_DELAY_S)
    too_long = delay > MAX_DELAY_S or waited + delay > TOTAL_WAIT_S
    if too_long and exc.retry_after is not None:
        raise BackendError(
            exc.kind,
            f"{exc.message}; the server asks to wait {exc.retry_after:g}s, longer than "
            f"lok waits within one call ({min(MAX_DELAY_S, TOTAL_WAIT_S - waited):g}s), "
            "so it was not asked again",
            exc.retry_after,
        ) from None
    if too_long or (deadline is not None and time.monotonic() + delay >= deadline):
        raise exc  # the wait would not fit: the caller's own policy decides
    return delay


def announce(exc: BackendError, delay: float, retry: int, retries: int) -> str:
    """The live view's line for a wait."""
    return f"{exc.summary()} — retrying in {delay:.1f}s (retry {retry} of {retries})"


def call(
    attempt: Callable[[float | None], T],
    timeout_s: float | None,
    retries: int,
    notify: Notify | None = None,
) -> T:
    """`attempt(time left)` until it succeeds, fails for good, or the retries, the
    total wait or the deadline (`timeout_s` for everything) run out."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    waited = 0.0
    retry = 0
    while True:
        left = None if deadline is None else max(0.001, deadline - time.monotonic())
        try:
            return attempt(left)
        except BackendError as exc:
            retry += 1
            delay = next_wait(exc, retry, retries, waited, deadline)
            if notify is not None:
                notify(announce(exc, delay, retry, retries))
            time.sleep(delay)
            waited += delay


async def call_async(
    attempt: Callable[[float | None], Awaitable[T]],
    timeout_s: float | None,
    retries: int,
    notify: Notify | None = None,
    wait: Callable[[float], Awaitable[None]] | None = None,
) -> T:
    """`call` for a coroutine: the same decisions, each wait an asyncio sleep (the
    event loop runs the other calls meanwhile), or `wait(seconds)` when given (the
    HTTP lane's, which hands the call's slot back while it waits)."""
    import asyncio

    pause = wait or asyncio.sleep
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    waited = 0.0
    retry = 0
    while True:
        left = None if deadline is None else max(0.001, deadline - time.monotonic())
        try:
            return await attempt(left)
        except BackendError as exc:
            retry += 1
            delay = next_wait(exc, retry, retries, waited, deadline)
            if notify is not None:
                notify(announce(exc, delay, retry, retries))
            await pause(delay)
            waited += delay
