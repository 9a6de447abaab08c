"""Run references: how a person names one run of the history.

    latest          the newest run (of the workflow, when one is given)
    latest~N        N runs before it, of the same workflow (as git counts parents)
    ID or PREFIX    a run id, or the unique start of one
    REF~N           N runs before REF, of REF's workflow

One resolver for every command that takes a run: `lok runs show`, `runs
diff`, `runs revert`, `run --resume`. A query over the history, nothing more.
"""

from __future__ import annotations

import re
from typing import Any

from lokfile.errors import UsageError
from lokfile.outcome import RunStatus
from lokfile.store.rundb import RunDB

_REF = re.compile(r"^(?P<base>[^~]*)(?:~(?P<back>\d*))?$")
REF_HINT = "use latest, latest~N, a run id or a unique prefix of one (`lok runs list`)"


def resolve(db: RunDB, ref: str | None, workflow: str | None = None) -> dict[str, Any]:
    """The run row that `ref` names (`latest` when None), within `workflow` when given."""
    text = (ref or "latest").strip()
    m = _REF.match(text)
    if m is None:
        raise UsageError(f"'{text}' is not a run reference", REF_HINT)
    base = m.group("base") or "latest"
    back = 0 if m.group("back") is None else int(m.group("back") or 1)
    if base == "latest":
        rows = db.runs(workflow, limit=1)
        if not rows:
            where = f" of workflow '{workflow}'" if workflow else ""
            raise UsageError(f"there is no run{where} yet", "run it first: lok run NAME")
        row = rows[0]
    else:
        row = _by_prefix(db, base, workflow)
    if back:
        older = [r for r in db.runs(row["workflow"]) if _older(r, row)]
        if back > len(older):
            raise UsageError(
                f"'{text}': workflow '{row['workflow']}' has only {len(older)} run(s) before "
                f"{row['id']}",
                "`lok runs list` shows the runs",
            )
        row = older[back - 1]
    return row


def last_unfinished(db: RunDB, workflow: str | None = None) -> dict[str, Any]:
    """The newest run that did not succeed (what a bare `--resume` continues), else the
    newest run; within `workflow` when given."""
    runs = db.runs(workflow)
    if not runs:
        where = f" of workflow '{workflow}'" if workflow else ""
        raise UsageError(f"there is no run{where} to resume", "run a workflow first: lok run NAME")
    return next((r for r in runs if r["status"] != RunStatus.SUCCEEDED), runs[0])


def _older(candidate: dict[str, Any], than: dict[str, Any]) -> bool:
    return bool((candidate["started"], candidate["id"]) < (than["started"], than["id"]))


def _by_prefix(db: RunDB, prefix: str, workflow: str | None) -> dict[str, Any]:
    exact = db.run(prefix)
    if exact is not None:
        return exact
    matches = [r for r in db.runs(workflow) if r["id"].startswith(prefix)]
    if not matches:
        raise UsageError(f"no run '{prefix}'", REF_HINT)
    if len(matches) > 1:
        shown = ", ".join(r["id"] for r in matches[:4])
        raise UsageError(
            f"run '{prefix}' is ambiguous: {len(matches)} runs match ({shown}…)",
            "give more characters of the run id",
        )
    return matches[0]
