"""What the agent CLI backends (claude, codex, gemini) share.

Each runs its CLI once per query, the prompt on stdin, under lok's deadline,
and reads the answer from what the CLI printed (`parse`). Health is the CLI
found on PATH and answering `--version`, with how to install it when it is
not. A subclass names its program, the flags lok sets itself and the install
command, and builds the environment, the command line and the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from lokfile.backends import subproc
from lokfile.backends.base import Answer, BackendError, Health, Request
from lokfile.model import BackendConfig


class AgentCLI:
    """One non-interactive CLI run per query; see the module docstring."""

    type_name: ClassVar[str]
    program: ClassVar[str]  # the command when `command` is not configured
    lok_flags: ClassVar[Mapping[str, int]]  # see subproc.split_args
    install: ClassVar[str]
    version_timeout_s: ClassVar[float] = 5.0

    def __init__(self, config: BackendConfig) -> None:
        self.config = config

    def _env(self) -> tuple[dict[str, str], str | None]:
        """The CLI's environment and the key it was given (for redaction)."""
        raise NotImplementedError

    def _with_key(
        self, extra: dict[str, str], key_var: str | None
    ) -> tuple[dict[str, str], str | None]:
        """`extra`, plus the configured key as `key_var`, plus the `env` table, over lok's own."""
        key = None
        if self.config.api_key_env:
            key = subproc.env_key(self.config.api_key_env)
            if key_var:
                extra[key_var] = key
        extra.update(subproc.config_env(self.config))
        return subproc.child_env(extra), key

    def argv(self, request: Request) -> list[str]:
        """The command line (the prompt is not in it: it goes on stdin)."""
        raise NotImplementedError

    def prompt_text(self, request: Request) -> str:
        """What goes on the CLI's stdin."""
        return request.prompt

    def timeout(self, request: Request) -> float | None:
        """lok's deadline for this run."""
        return subproc.effective_timeout(request.timeout_s, self.config)

    def parse(self, done: subproc.Completed, key: str | None = None) -> Answer:
        """The answer in the CLI's output, or the classified failure."""
        raise NotImplementedError

    def query(self, request: Request) -> Answer:
        """One run of the CLI."""
        env, key = self._env()
        done = subproc.run(
            self.argv(request),
            stdin=self.prompt_text(request).encode(),
            cwd=request.cwd,
            env=env,
            timeout_s=self.timeout(request),
        )
        return self.parse(done, key)

    def health(self, probe: bool = False) -> Health:
        """On PATH and answering `--version`; with probe, a one-line prompt."""
        try:
            env, _ = self._env()
        except BackendError as exc:
            return Health(ready=False, detail=exc.message, key_set=False)
        key_set = True if self.config.api_key_env else None
        health = subproc.cli_health(
            self.config,
            subproc.program_argv(self.config, self.program)
            + subproc.split_args(self.config.args, self.lok_flags)[0],
            env,
            key_set,
            self.version_timeout_s,
            install=self.install,
        )
        return subproc.probe(self, health) if probe and health.ready else health
