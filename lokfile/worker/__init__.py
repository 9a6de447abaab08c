"""worker: the child side of a run, the code that runs inside an executor.

    jobs       plain, picklable job descriptions sent from the coordinator
    execute    run one job: a shell command (lokfile.process.run) or a backend
               query, with retries
    edits      apply_edits, verify and fix_retries of an LLM step
    verify     the verify command: keywords, project detection, running it
               (lokfile.process.run)
    snapshots  the files an edit changes, saved and put back exactly
    journal    what an edit is about to change, durable before the first write
    cancel     a worker's stop flag, shared by the threads running its jobs

The seam is `jobs` (what goes in) and `execute.run_job` (a `JobResult` out);
no module here imports the engine or writes the run database, only artifacts.
This face imports nothing (the fast path reads `journal`):
`from lokfile.worker import journal`.
"""

__all__ = ["cancel", "execute", "jobs", "journal", "snapshots"]
