"""Job descriptions: plain, picklable data sent from the coordinator to workers.

Kept apart from `execute` so the coordinator can describe work without
importing what runs it (subprocess and friends stay out of a no-op run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lokfile.model import BackendConfig


@dataclass(frozen=True, kw_only=True)
class ShellJob:
    command: str  # the command as rendered (see shellrun for how it starts)
    outputs: tuple[str, ...] = ()  # declared output files, relative to cwd
    wrapper: str | None = None  # [defaults] command_wrapper, applied when it starts


@dataclass(frozen=True, kw_only=True)
class QueryJob:
    backend: BackendConfig
    prompt: str
    system: str | None = None
    model: str | None = None
    temperature: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    edits: EditSettings | None = None  # apply_edits / verify / fix_retries on this step
    answer: str | None = None  # an answer already chosen (multi-backend edits): apply, don't ask


@dataclass(frozen=True, kw_only=True)
class EditSettings:
    """What to do with an answer after it arrives; see lokfile.worker.edits."""

    apply_edits: bool = False
    verify: str | None = None
    fix_retries: int = 0
    command_wrapper: str | None = None
    # re-apply a stored result instead of reading the answer's edits: each touched path
    # -> (digest before the step or None for a new file, digest after); first try only
    replay: tuple[tuple[str, str | None, str], ...] | None = None


@dataclass(frozen=True, kw_only=True)
class Job:
    """Everything a worker needs; plain data, so it pickles and could run on another host."""

    id: int
    step: str
    unit: str
    work: ShellJob | QueryJob
    cwd: str
    runs_dir: str
    timeout_s: float | None
    retries: int = 0
    retry_delay_s: float = 1.0
    run_id: str = ""  # the run it belongs to (an edit's journal names it)


@dataclass(frozen=True, kw_only=True)
class JobResult:
    id: int
    success: bool
    output: str  # the answer / stdout on success; the error text on failure
    digest: str | None  # artifact holding `output`
    error: str | None = None
    error_kind: str | None = None
    attempts: int = 1
    started: float = 0.0
    ended: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)  # declared output -> digest
    output_stats: list[tuple[str, int, int, int, str]] = field(default_factory=list)
    model: str | None = None
    truncated: bool = False  # the backend stopped at the token limit: the answer is cut
    snapshot: str | None = None  # edit snapshot manifest digest, when the step edited files
    # an apply_edits unit's record: {"count": edits, "files": {path: [before|None, after]}}
    edits: dict[str, Any] | None = None
    worker: str = "local"  # where it ran: "local" (a worker process of this host), "inline", …
    # what each backend call of the job reported (Answer.usage plus its "model"), even when
    # the job failed after the calls (a verify that failed): the engine prices them
    calls: tuple[dict[str, Any], ...] = ()

    @classmethod
    def failure(
        cls, job_id: int, error: str, kind: str, started: float | None = None, worker: str = "local"
    ) -> JobResult:
        """A failed result with no artifact (none could be written, or none was made):
        the job's worker died, lok itself failed, the disk is full."""
        import time

        now = time.time()
        return cls(
            id=job_id,
            success=False,
            output=f"Error: {error}",
            digest=None,
            error=error,
            error_kind=kind,
            started=now if started is None else started,
            ended=now,
            worker=worker,
        )
