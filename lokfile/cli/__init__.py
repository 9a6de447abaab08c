"""cli: the `lok` command, a click group whose subcommands load on first use.

    run, watch           `lok run`, `lok status`, `lok watch`
    runs                 `lok runs …` and `lok gc`: the history, read back
    cache                `lok cache push | pull | status`: the team cache
    workflow             `lok workflow …` and `lok init` (init_files: what it writes)
    backends             `lok ask`, `lok doctor`, `lok backends`
    mcp                  `lok mcp`: the MCP server (lokfile/mcp/), for coding agents
    modes, agents        the built-in commands and the multi-LLM modes
    common               what every command shares: reporter, JSON on stdout, results

`lok --help` and `lok --version` import only click: each subcommand lives in
its own module, listed in COMMANDS with its one-line help, and is imported
only when it runs. Commands are thin, over `lokfile.api` and the agents.
Errors are turned into `Error: …` / `Hint: …` here, once (`main`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from lokfile import __version__

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["COMMANDS", "cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])

# name -> ("module:attr", one-line help shown by `lok --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("lokfile.cli.run:run", "Run a workflow, rebuilding only what changed."),
    "status": ("lokfile.cli.run:status", "Show each step fresh or stale, and why."),
    "watch": (
        "lokfile.cli.watch:watch",
        "Run a workflow, then rerun it whenever its inputs change.",
    ),
    "runs": ("lokfile.cli.runs:runs", "Run history: list, show, diff, verify, revert."),
    "gc": ("lokfile.cli.runs:gc", "Remove stored artifacts that no kept run reaches."),
    "cache": ("lokfile.cli.cache:cache", "Team cache: push, pull and compare shared results."),
    "workflow": ("lokfile.cli.workflow:workflow", "List, show and validate workflows."),
    "init": ("lokfile.cli.workflow:init", "Create lok.toml, an example workflow and .lok/."),
    "ask": ("lokfile.cli.backends:ask", "Ask every available backend one prompt, in parallel."),
    "doctor": ("lokfile.cli.backends:doctor", "Check every configured backend."),
    "backends": ("lokfile.cli.backends:backends", "List the configured backends."),
    "suggest": ("lokfile.cli.agents:suggest", "Rank the backends for a task."),
    "hunt": ("lokfile.cli.modes:hunt", "Hunt for bugs (built-in workflow)."),
    "audit": ("lokfile.cli.modes:audit", "Security audit (built-in workflow)."),
    "explain": ("lokfile.cli.modes:explain", "Explain a codebase (built-in workflow)."),
    "diff": ("lokfile.cli.modes:diff", "Review a git diff (built-in workflow)."),
    "ci": ("lokfile.cli.modes:ci", "Find the root cause of failed CI checks on a PR."),
    "fix": ("lokfile.cli.modes:fix", "Propose a fix for a GitHub issue."),
    "debate": ("lokfile.cli.agents:debate", "Let the backends debate a question."),
    "spawn": ("lokfile.cli.agents:spawn", "Split a task into parallel subtasks."),
    "conduct": ("lokfile.cli.agents:conduct", "Let a conductor backend delegate a task."),
    "mcp": ("lokfile.cli.mcp:mcp", "Serve lok to coding agents over MCP (stdio or HTTP)."),
}


class Session:
    """Global options, handed to every subcommand as the click context object.

    A plain class (not a dataclass) and paths made on first use: `lok --version`
    must not pay for importing dataclasses or pathlib.
    """

    def __init__(
        self, directory: str | Path | None, config_file: str | Path | None, debug: bool
    ) -> None:
        self._directory = directory
        self._config_file = config_file
        self.debug = debug

    @property
    def directory(self) -> Path | None:
        """`-C DIR`, if given."""
        return _as_path(self._directory)

    @property
    def config_file(self) -> Path | None:
        """`--config FILE`, if given."""
        return _as_path(self._config_file)


def _as_path(value: str | Path | None) -> Path | None:
    if value is None:
        return None
    from pathlib import Path

    return Path(value)


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, _, attr = entry[0].partition(":")
        try:
            command: click.Command = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            if ctx.find_root().params.get("debug"):
                raise
            return None
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__, "-V", "--version", prog_name="lok", message="%(prog)s %(version)s"
)
@click.option(
    "-C",
    "directory",
    type=click.Path(file_okay=False),
    help="Run as if lok was started in DIR (the project root is searched from there).",
)
@click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="Also read this config file, over lok.toml (highest precedence).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, directory: str | None, config_file: str | None, debug: bool) -> None:
    """lok runs multi-LLM workflows like make: every step's output is cached by
    what went into it, so a rerun only pays for what changed.

    \b
    Quick start:
      lok init                 create lok.toml and .lok/workflows/example.toml
      lok run example          run it (again: nothing is rerun)
      lok status example       what is fresh, what is stale, and why
      lok runs diff            what changed between the last two runs

    Exit codes: 0 ok, 1 a step or run failed, 2 bad input, 130 interrupted
    (Ctrl-C or SIGTERM).
    """
    if directory is not None:
        import os

        if not os.path.isdir(directory):
            from lokfile.errors import UsageError

            what = "is not a folder" if os.path.exists(directory) else "no such folder"
            raise UsageError(f"-C {directory}: {what}", "give -C an existing folder")
    ctx.obj = Session(directory=directory, config_file=config_file, debug=debug)


class AliasOption(click.Option):
    """An option whose older spellings (`aliases`) still work but are left out of --help."""

    def __init__(self, *args: Any, aliases: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases = aliases

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown, self.opts = self.opts, [o for o in self.opts if o not in self.aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def backend_option(
    help_text: str, dest: str = "backend", multiple: bool = False
) -> Callable[[F], F]:
    """`-b/--backend NAMES`, spelt the same in every command (`--backends` still works)."""
    return click.option(
        "-b",
        "--backend",
        "--backends",
        dest,
        cls=AliasOption,
        aliases=("--backends",),
        multiple=multiple,
        metavar="NAMES",
        help=help_text,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `lok` script."""
    from lokfile.errors import (
        EXIT_BAD_INPUT,
        EXIT_FAILED,
        EXIT_INTERRUPTED,
        EXIT_OK,
        LokError,
        sigterm_is_ctrl_c,
    )
    from lokfile.errors import interrupted as _interrupted

    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    sigterm_is_ctrl_c()
    try:
        code = cli.main(args=argv, prog_name="lok", standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)  # `ctx.exit(n)` returns n when click is not in standalone mode
    except LokError as exc:
        if debug:
            raise
        report_error(exc)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        click.echo(_interrupted(exc.__cause__), err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_BAD_INPUT if isinstance(exc, click.UsageError) else exc.exit_code)
    except KeyboardInterrupt as exc:
        click.echo(_interrupted(exc), err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # the edge: nothing unexpected escapes as a traceback
        if debug:
            raise
        click.echo(f"Error: internal error: {type(exc).__name__}: {exc}", err=True)
        click.echo("Hint: rerun with --debug for the traceback, and please report it", err=True)
        sys.exit(EXIT_FAILED)
    sys.exit(EXIT_OK)


def report_error(exc: Any) -> None:
    """Print a LokError as `Error: …` / `Hint: …` lines on stderr."""
    for line in exc.lines():
        click.echo(line, err=True)
