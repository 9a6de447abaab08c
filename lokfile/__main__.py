"""The `lok` command's entry point (and `python -m lokfile`).

Two answers come before click and the command table load:

* `lok --version` / `lok -V`: what scripts and agents call to see whether lok
  is installed;
* a plain `lok run [-j N] [--json] WORKFLOW [ARGS…]` whose last run can be
  replayed (lokfile.engine.snapshot): a no-op is recorded and printed exactly
  as `lokfile.cli.run` would, without importing click (a third of a no-op's
  time). Anything else — another option, an error, a run that must execute —
  goes to `lokfile.cli.main`, which decides again from the start.
"""

from __future__ import annotations

import sys  # nothing more here: `lok --version` pays for every import of this module


def main() -> None:
    argv = sys.argv[1:]
    if argv in (["--version"], ["-V"]):
        from lokfile import __version__

        sys.stdout.write(f"lok {__version__}\n")
        raise SystemExit(0)
    if argv[:1] == ["run"]:
        plain = _plain_run(argv[1:])
        if plain is not None:
            _replay(*plain)  # exits when it replayed
    from lokfile.cli import main as run_cli

    run_cli()


def entry() -> None:
    """The `lok` command and `python -m lokfile`: `main`, and a `lok run` that is over
    ends without the interpreter's teardown (`_leave`). `main` itself raises SystemExit
    as before, for a caller in the same process."""
    try:
        main()
    except SystemExit as exc:
        if sys.argv[1:2] == ["run"]:
            _leave(exc.code)
        raise


def _leave(code: object) -> None:
    """End a finished `lok run` without the interpreter's teardown, or return to let the
    interpreter end it. A fan-out of 2000 prompts left ~70 MB of objects whose freeing,
    module by module, took 22-48 ms after the run was recorded and printed (3 ms with
    this). Everything registered to run at exit still runs; with another thread alive
    (something to join) or a code that is not a number, the normal exit does it all."""
    import threading

    if threading.active_count() > 1 or not (code is None or isinstance(code, int)):
        return
    import atexit
    import os

    atexit._run_exitfuncs()
    atexit._clear()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return  # the normal exit reports what it can
    os._exit(code or 0)


def _jobs(text: str) -> bool:
    return text.isdigit() and 1 <= int(text) <= 1024


def _plain_run(argv: list[str]) -> tuple[str, tuple[str, ...], bool] | None:
    """(workflow, args, --json) of `run [-j N] [--json] WORKFLOW [ARGS…]`, else None. An
    argument after WORKFLOW that starts with `-` could be one of click's: not plain."""
    as_json, i = False, 0
    while i < len(argv) and argv[i].startswith("-"):
        opt = argv[i]
        if opt == "--json":
            as_json, i = True, i + 1
        elif opt in ("-j", "--jobs") and i + 1 < len(argv) and _jobs(argv[i + 1]):
            i += 2
        elif (opt.startswith("-j") and _jobs(opt[2:])) or (
            opt.startswith("--jobs=") and _jobs(opt[7:])
        ):
            i += 1
        else:
            return None
    if i >= len(argv) or any(a.startswith("-") for a in argv[i + 1 :]):
        return None
    return argv[i], tuple(argv[i + 1 :]), as_json


def _replay(workflow: str, args: tuple[str, ...], as_json: bool) -> None:
    """Replay and print a no-op, then exit; return when the normal path must run."""
    import os

    from lokfile.errors import EXIT_INTERRUPTED, interrupted, sigterm_is_ctrl_c

    sigterm_is_ctrl_c()
    try:
        from pathlib import Path

        from lokfile.engine import snapshot
        from lokfile.project import find_root
        from lokfile.reporters import for_terminal
        from lokfile.worker import journal

        cwd = os.getcwd()
        root = find_root(Path(cwd))
        journal.recover(root)  # before anything: an edit lok died in is put back
        report = for_terminal(sys.stderr, as_json, summary=False)
        outcome = snapshot.replay(root, cwd, workflow, args, None, report)
    except KeyboardInterrupt as exc:
        sys.stderr.write(interrupted(exc) + "\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
    except Exception:  # the normal path meets it again, and reports it
        return
    if outcome is None:
        return
    from lokfile.reporters import json_text, outcome_json, results_block

    sys.stdout.write(json_text(outcome_json(outcome)) if as_json else results_block(outcome))
    sys.stdout.flush()
    report.summary_last(outcome)
    raise SystemExit(outcome.exit_code)


if __name__ == "__main__":
    entry()
