"""executors: where jobs run, apart from the coordinator.

    local   a pool of worker processes, each running jobs in threads; it ends
            every process a job started, however the run ends

The seam is `local.WorkerPool`: submit a job, read results and events, cancel,
close. This face imports nothing: `from lokfile.executors.local import WorkerPool`.
"""

__all__ = ["local"]
