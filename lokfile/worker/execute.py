"""Run ONE job in a worker: picklable description in, digests and events out.

A job is a shell command or one backend query for one unit of one step. The
worker runs it with retries (exponential backoff with jitter and a cap,
honouring Retry-After, never retrying what cannot succeed), runs a shell
command through lokfile.process.run (which ends its whole process tree at the
per-attempt timeout, or when the job is cancelled), writes the output (and
declared output files) to the store, and returns a JobResult.
Nothing here touches the run history: the coordinator alone writes it.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lokfile.errors import DiskFullError, disk_full
from lokfile.model import BackendConfig
from lokfile.process.run import Running
from lokfile.store.artifacts import Store
from lokfile.worker.cancel import Cancel
from lokfile.worker.jobs import EditSettings, Job, JobResult, QueryJob, ShellJob

__all__ = ["EditSettings", "Job", "JobResult", "QueryJob", "ShellJob", "backoff_delay", "run_job"]

BACKOFF_CAP_S = 60.0
NOT_FOUND_EXIT = 127

Emit = Callable[[str], None]


class Attempt:
    """The outcome of one try."""

    def __init__(
        self,
        ok: bool,
        text: str,
        error: str | None = None,
        kind: str | None = None,
        retryable: bool = True,
        retry_after: float | None = None,
        model: str | None = None,
        snapshot: str | None = None,
        edits: dict[str, Any] | None = None,
        calls: tuple[dict[str, Any], ...] = (),
        truncated: bool = False,
    ):
        self.ok, self.text, self.error, self.kind = ok, text, error, kind
        self.retryable, self.retry_after, self.model = retryable, retry_after, model
        self.snapshot = snapshot  # manifest of the files an edit replaced (for revert)
        self.edits = edits  # the edit record (JobResult.edits)
        self.calls = calls  # the usage each backend call of this try reported
        self.truncated = truncated  # the answer was cut at the token limit


def backoff_delay(base_s: float, attempt: int, retry_after: float | None = None) -> float:
    """Delay before retry number `attempt` (1-based): base·2^(n-1), capped, +0–20 % jitter."""
    delay: float = min(BACKOFF_CAP_S, base_s * (2 ** (attempt - 1))) * (1 + random.random() * 0.2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, BACKOFF_CAP_S * 5))
    return delay


def run_job(
    job: Job, emit: Emit, register: Callable[[Running | None], None], cancel: Cancel | None = None
) -> JobResult:
    """Run `job` to completion (all its attempts). `register` is handed each shell command
    while it runs (and None after), so a cancel can stop it (`Running.stop`);
    `cancel`, once set, ends the job at the next attempt (an edit puts its files back).

    A full disk fails the job with kind "disk_full" and no artifact (none could be written).
    """
    started = time.time()
    try:
        return _run_job(job, emit, register, cancel, started)
    except (DiskFullError, OSError) as exc:
        failed = disk_full_result(job, exc, started)
        if failed is None:
            raise
        return failed


def disk_full_result(job: Job, exc: DiskFullError | OSError, started: float) -> JobResult | None:
    """The failed result of a job that could not write because the disk is full (no
    artifact: none could be written), or None when `exc` is another error."""
    full = exc if isinstance(exc, DiskFullError) else disk_full(exc, "a file", job.runs_dir)
    if full is None:
        return None
    return JobResult.failure(job.id, f"step '{job.step}': {full.message}", "disk_full", started)


def _run_job(
    job: Job,
    emit: Emit,
    register: Callable[[Running | None], None],
    cancel: Cancel | None,
    started: float,
) -> JobResult:
    attempts = 0
    last: Attempt | None = None
    calls: list[dict[str, Any]] = []  # every answered call of every try
    for attempt in range(job.retries + 1):
        if cancel is not None and cancel.is_set():
            last = last or Attempt(False, "", "interrupted", "interrupted", retryable=False)
            break
        attempts += 1
        if isinstance(job.work, ShellJob):
            last = _run_shell(job.work, job, register)
        else:
            if job.work.answer is not None:
                last = Attempt(True, job.work.answer)
            else:
                last = _run_query(job.work, job.cwd, job.timeout_s, emit)
            if last.ok and job.work.edits is not None:
                last = _after_answer(job, job.work, last, emit, cancel)
            calls += last.calls
        if last.ok or not last.retryable or attempt == job.retries:
            break
        delay = backoff_delay(job.retry_delay_s, attempt + 1, last.retry_after)
        emit(retry_note(job, attempt, last, delay))
        if cancel is not None:
            cancel.sleep(delay)
        else:
            time.sleep(delay)
    assert last is not None
    return result_of(job, last, attempts, calls, started)


def retry_note(job: Job, attempt: int, last: Attempt, delay: float) -> str:
    """The live view's line after try number `attempt` (0-based) failed."""
    return (
        f"attempt {attempt + 1}/{job.retries + 1} failed: {_first_line(last.error)}"
        f" — will retry in {delay:.1f}s (Retry {attempt + 1}/{job.retries})"
    )


def result_of(
    job: Job, last: Attempt, attempts: int, calls: list[dict[str, Any]], started: float
) -> JobResult:
    """The job's result from its last try: the output (or the error) stored as an
    artifact, with a shell step's declared output files."""
    store = Store(Path(job.runs_dir))
    if not last.ok:
        text = f"Error: {last.error}"
        return JobResult(
            id=job.id,
            success=False,
            output=text,
            digest=store.put_text(text),
            error=last.error,
            error_kind=last.kind,
            attempts=attempts,
            started=started,
            ended=time.time(),
            model=last.model,
            calls=tuple(calls),
        )
    outputs: dict[str, str] = {}
    stats: list[tuple[str, int, int, int, str]] = []
    if isinstance(job.work, ShellJob):
        for rel in job.work.outputs:
            path = Path(job.cwd) / rel
            if not path.is_file():
                err = f"declared output '{rel}' was not written by the command"
                text = f"Error: {err}"
                return JobResult(
                    id=job.id,
                    success=False,
                    output=text,
                    digest=store.put_text(text),
                    error=err,
                    error_kind="output_missing",
                    attempts=attempts,
                    started=started,
                    ended=time.time(),
                )
            st = path.stat()
            digest = store.put_file(path)
            outputs[rel] = digest
            stats.append((rel, st.st_size, st.st_mtime_ns, st.st_ino, digest))
    return JobResult(
        id=job.id,
        success=True,
        output=last.text,
        digest=store.put_text(last.text),
        attempts=attempts,
        started=started,
        ended=time.time(),
        outputs=outputs,
        output_stats=stats,
        model=last.model,
        truncated=last.truncated,
        snapshot=last.snapshot,
        edits=last.edits,
        calls=tuple(calls),
    )


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:160] if lines else "failed"


def _run_shell(work: ShellJob, job: Job, register: Callable[[Running | None], None]) -> Attempt:
    from lokfile.process.launch import launch, shown

    command, timeout_s = work.command, job.timeout_s
    try:
        started = launch(command, work.wrapper, Path(job.runs_dir).parent / "tmp")
    except ValueError as exc:
        return Attempt(False, "", str(exc), "failed", retryable=False)
    try:
        return _run_launched(started.argv, command, job.cwd, timeout_s, register, shown)
    finally:
        started.done()


def _run_launched(
    argv: list[str],
    command: str,
    cwd: str,
    timeout_s: float | None,
    register: Callable[[Running | None], None],
    shown: Callable[[str], str],
) -> Attempt:
    from lokfile.process.run import run
    from lokfile.process.tree import adopts_orphans

    # A worker process adopts and ends whatever its steps leave behind (and dies with lok):
    # there a step skips the child guard, which would cost every step the vfork path.
    guard = not adopts_orphans()
    try:
        done = run(argv, cwd=cwd, timeout_s=timeout_s, register=register, guard=guard)
    except OSError as exc:
        return Attempt(False, "", f"cannot start sh: {exc}", "not_installed", retryable=False)
    finally:
        register(None)
    if done.timed_out:
        return Attempt(False, "", f"Step timed out after {_fmt_s(timeout_s)}", "timeout")
    stdout = done.out
    if done.returncode != 0:
        stderr = done.err.strip()
        code = done.returncode
        how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
        detail = f"Shell command failed ({how}): {shown(command)}"
        if stderr:
            detail += "\n" + stderr[-4000:]
        return Attempt(
            False,
            stdout,
            detail,
            "not_installed" if code == NOT_FOUND_EXIT else "failed",
            retryable=code != NOT_FOUND_EXIT,
        )
    return Attempt(True, stdout.strip())


_BACKENDS: dict[str, Any] = {}


def backend_for(config: BackendConfig) -> Any:
    """The process's backend object for `config` (made once: it may pool connections)."""
    from lokfile import backends
    from lokfile.hashing import digest_json

    cache_key = digest_json([config.name, config.identity()])
    backend = _BACKENDS.get(cache_key)
    if backend is None:
        backend = _BACKENDS[cache_key] = backends.create(config)
    return backend


def query_request(work: QueryJob, cwd: str, timeout_s: float | None, emit: Emit | None) -> Any:
    """The backends' Request for a query job."""
    from lokfile.backends.base import Request

    return Request(
        prompt=work.prompt,
        cwd=cwd,
        system=work.system,
        model=work.model,
        temperature=work.temperature,
        seed=work.seed,
        max_tokens=work.max_tokens,
        timeout_s=timeout_s,
        notify=emit,  # a backend's own retries show on the live view
    )


def query_failed(work: QueryJob, exc: Exception) -> Attempt:
    """The try of a query that raised: a BackendError as its kind says (retryable or
    not), anything else (a backend's own bug) as a failure."""
    from lokfile.backends.base import BackendError, ErrorKind

    if isinstance(exc, BackendError):
        message = f"{work.backend.name}: {exc.summary()}"
        # a named wait longer than a step waits: trying again sooner would be refused too
        again = exc.kind.retryable and not (exc.retry_after or 0) > BACKOFF_CAP_S * 5
        return Attempt(False, "", message, exc.kind.value, again, exc.retry_after)
    kind = ErrorKind.FAILED.value
    return Attempt(False, "", f"{work.backend.name}: {type(exc).__name__}: {exc}", kind)


def query_answered(answer: Any) -> Attempt:
    """The try of a query that answered (an Answer), with the usage it reported."""
    return Attempt(
        True,
        answer.text,
        model=answer.model,
        calls=({**answer.usage, "model": answer.model},),
        truncated=answer.truncated,
    )


def _run_query(
    work: QueryJob, cwd: str, timeout_s: float | None, emit: Emit | None = None
) -> Attempt:
    try:
        answer = backend_for(work.backend).query(query_request(work, cwd, timeout_s, emit))
    except Exception as exc:  # a backend's own bug must not kill the worker
        return query_failed(work, exc)
    return query_answered(answer)


def _after_answer(
    job: Job, work: QueryJob, answer: Attempt, emit: Emit, cancel: Cancel | None = None
) -> Attempt:
    """Apply edits and verify (with fix retries that ask the same backend again)."""
    from dataclasses import replace

    from lokfile.worker import edits

    assert work.edits is not None
    calls = list(answer.calls)

    def requery(prompt: str) -> str:
        again = _run_query(replace(work, prompt=prompt, edits=None), job.cwd, job.timeout_s, emit)
        calls.extend(again.calls)
        if not again.ok:
            raise edits.RequeryFailed(again.error or "re-query failed")
        return again.text

    outcome = edits.apply_and_verify(
        answer.text,
        work.prompt,
        work.edits,
        Path(job.cwd),
        Store(Path(job.runs_dir)),
        job.timeout_s,
        requery,
        emit,
        cancel,
        (job.run_id, job.step, job.unit),
    )
    if outcome.ok:
        return Attempt(
            True,
            outcome.text,
            model=answer.model,
            snapshot=outcome.snapshot,
            edits=outcome.record,
            calls=tuple(calls),
            truncated=answer.truncated,
        )
    return Attempt(False, outcome.text, outcome.error, "failed", retryable=False, calls=tuple(calls))


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds:g}s"


def ignore_sigint() -> None:
    """Workers leave Ctrl-C to the coordinator."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def environment_value(name: str) -> str | None:
    return os.environ.get(name)
