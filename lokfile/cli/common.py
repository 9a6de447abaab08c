"""What every command shares: the progress reporter, JSON on stdout, the results.

A command that reports prints one JSON document on stdout with `--json` (and
nothing else there), progress on stderr, and the summary line last, after the
results: these helpers are the one place that does each.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click


def reporter(as_json: bool, summary: bool = False) -> Any:
    """Progress on stderr (the live view on a terminal, plain lines elsewhere); with
    `summary` False the summary line waits for `emit_outcome`, so it comes last."""
    from lokfile.reporters import for_terminal

    return for_terminal(sys.stderr, as_json, summary=summary)


def json_text(document: Any) -> str:
    """The one way a command's JSON document is written (indented, UTF-8 kept)."""
    from lokfile.reporters import json_text as text

    return text(document)


def emit_json(document: Any) -> None:
    """Print a JSON document on stdout."""
    sys.stdout.write(json_text(document))
    sys.stdout.flush()


def emit_outcome(
    outcome: Any, as_json: bool, output_file: Path | None = None, report: Any = None
) -> None:
    """Print the results block (or the JSON document) where the user asked, then the
    summary line (`report`'s, held back until now so it is the last thing shown)."""
    from lokfile.reporters import outcome_json, results_block

    text = json_text(outcome_json(outcome)) if as_json else results_block(outcome)
    if output_file is not None:
        output_file.write_text(text, encoding="utf-8")
        click.echo(f"✓ Results written to {output_file}", err=True)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if report is not None:
        report.summary_last(outcome)
