"""`type = "reverse"`: a lok backend plugin that answers with the prompt reversed.

It shows the whole contract a plugin implements (see lokfile/backends/base.py):
a class with `type_name`, built from a picklable BackendConfig, whose
`query` answers or raises BackendError, and whose `health` says if it is ready.

    [backends.rev]
    type = "reverse"
    prefix = ">> "          # any extra key lands in config.extra
"""

from __future__ import annotations

from typing import ClassVar

from lokfile.backends.base import Answer, BackendError, ErrorKind, Health, Request
from lokfile.model import BackendConfig


class ReverseBackend:
    """Reverses the prompt; fails on an empty one, to show how failures are reported."""

    type_name: ClassVar[str] = "reverse"

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.prefix = str(config.extra.get("prefix", ""))

    def query(self, request: Request) -> Answer:
        """The prompt, reversed, after the configured prefix."""
        if not request.prompt.strip():
            raise BackendError(ErrorKind.BAD_RESPONSE, "nothing to reverse: the prompt is empty")
        return Answer(self.prefix + request.prompt[::-1], model="reverse-1")

    def health(self, probe: bool = False) -> Health:
        """Always ready: there is nothing to install or reach."""
        if probe:
            self.query(Request(prompt="ping", cwd="."))
        return Health(ready=True, version="lok-reverse 0.1.0", detail="reverses prompts")
