"""`type = "command"`: any command-line tool as a backend.

`command` and `args` form an argv template, run without a shell:

    {prompt}        replaced by the prompt, inside ONE argv element
    {prompt_file}   replaced by the path of a temporary file holding the prompt
    {model}         replaced by the model (request's, else the backend's)

With neither placeholder the prompt goes to stdin. `prompt_via = "stdin" |
"arg" | "file"` forces a way (`arg` / `file` append the prompt / file path
when the template has no placeholder). The answer is stdout minus its first
`skip_lines` lines, trimmed; a non-zero exit is a failure reported with the
first line of stderr.
"""

from __future__ import annotations

import os
import tempfile
from typing import ClassVar

from lokfile.backends import subproc
from lokfile.backends.base import Answer, BackendError, ErrorKind, Health, Request
from lokfile.model import BackendConfig

PROMPT = "{prompt}"
PROMPT_FILE = "{prompt_file}"
MODEL = "{model}"
VIA = ("stdin", "arg", "file")


class CommandBackend:
    """Runs a configured command; see the module docstring."""

    type_name: ClassVar[str] = "command"

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        if not config.command:
            raise BackendError(ErrorKind.NOT_INSTALLED, f"backend '{config.name}' has no `command`")
        via = str(config.extra.get("prompt_via") or self._implied_via())
        if via not in VIA:
            raise BackendError(
                ErrorKind.FAILED,
                f"backend '{config.name}': prompt_via must be one of {', '.join(VIA)}, not '{via}'",
            )
        self.via = via

    def _template(self) -> list[str]:
        return [*subproc.program_argv(self.config, ""), *self.config.args]

    def _implied_via(self) -> str:
        words = self._template()
        if any(PROMPT_FILE in w for w in words):
            return "file"
        if any(PROMPT in w for w in words):
            return "arg"
        return "stdin"

    def argv(self, request: Request, prompt_file: str | None = None) -> list[str]:
        """The command line for `request` (with the prompt in it when `prompt_via` says so)."""
        model = request.model or self.config.model or ""
        words = self._template()
        has_prompt = any(PROMPT in w for w in words)
        has_file = any(PROMPT_FILE in w for w in words)
        out: list[str] = []
        for word in words:
            # {prompt_file} first: "{prompt}" is not a substring of it, but a prompt may contain it.
            if prompt_file is not None:
                word = word.replace(PROMPT_FILE, prompt_file)
            word = word.replace(MODEL, model)
            if self.via == "arg":
                word = word.replace(PROMPT, request.prompt)
            out.append(word)
        if self.via == "arg" and not has_prompt:
            out.append(request.prompt)
        if self.via == "file" and not has_file and prompt_file is not None:
            out.append(prompt_file)
        return out

    def query(self, request: Request) -> Answer:
        """Run the command once and take its stdout."""
        env = subproc.child_env(subproc.config_env(self.config))
        timeout = subproc.effective_timeout(request.timeout_s, self.config)
        if self.via == "file":
            fd, path = tempfile.mkstemp(prefix="lok-prompt-", suffix=".txt")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(request.prompt)
                done = subproc.run(
                    self.argv(request, path), cwd=request.cwd, env=env, timeout_s=timeout
                )
            finally:
                os.unlink(path)
        else:
            stdin = request.prompt.encode() if self.via == "stdin" else None
            done = subproc.run(
                self.argv(request), stdin=stdin, cwd=request.cwd, env=env, timeout_s=timeout
            )
        return self.parse(done)

    def parse(self, done: subproc.Completed) -> Answer:
        """stdout minus `skip_lines`, or the failure with stderr's first line."""
        name = self.config.command or self.config.name
        if done.returncode != 0:
            detail = subproc.first_line(done.err) or subproc.first_line(done.out) or "no output"
            raise BackendError(
                ErrorKind.FAILED, f"{name} exited with code {done.returncode}: {detail}"
            )
        lines = done.out.splitlines()
        text = "\n".join(lines[self.config.skip_lines :]) if self.config.skip_lines else done.out
        return Answer(text.strip(), self.config.model)

    def health(self, probe: bool = False) -> Health:
        """The program is on PATH; with probe, it answers a one-line prompt."""
        env = subproc.child_env(subproc.config_env(self.config))
        program = self._template()[0]
        try:
            path = subproc.resolve_program(program, env)
        except BackendError as exc:
            return Health(ready=False, found=False, detail=exc.message)
        health = Health(ready=True, found=True, detail=path)
        return subproc.probe(self, health) if probe else health
