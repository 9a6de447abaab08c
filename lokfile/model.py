"""What lok works on, as frozen values: workflows, steps, settings, outcomes.

No I/O here. `loader` and `config` build these from files; everything else
only reads them.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from typing import Any

from lokfile.outcome import RunStatus as RunStatus  # statuses live with the outcomes
from lokfile.outcome import Status as Status

# --------------------------------------------------------------------------
# Workflows
# --------------------------------------------------------------------------

DEFAULT_STEP_TIMEOUT_MS = 120_000
OUTPUT_FORMATS = ("text", "json", "json_array", "jsonl", "lines")
CONSENSUS_MODES = ("first", "synthesis", "vote", "weighted_vote")


class StepKind(str, enum.Enum):
    SHELL = "shell"
    LLM = "llm"


@dataclass(frozen=True)
class ArgSpec:
    """A named workflow argument: `[args.NAME] default = …, description = …`."""

    name: str
    default: str | None = None
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Step:
    """One step of a workflow, with every default already resolved."""

    name: str
    kind: StepKind
    prompt: str | None = None
    shell: str | None = None
    backends: tuple[
        str, ...
    ] = ()  # resolved: `backends`, else `backend` split on ',', else the default
    depends_on: tuple[str, ...] = ()
    when: str | None = None  # `when` or its alias `if`
    for_each: str | None = None
    output_format: str = "text"
    retries: int = 0
    retry_delay_ms: int = 1000
    timeout_ms: int = DEFAULT_STEP_TIMEOUT_MS  # 0 = no timeout
    continue_on_error: bool = False
    min_deps_success: int | None = None
    consensus: str = "synthesis"
    apply_edits: bool = False
    verify: str | None = None
    fix_retries: int = 0
    sources: tuple[
        str, ...
    ] = ()  # globs relative to the project root (workflow-level ones included)
    env: tuple[str, ...] = ()  # env var names whose values enter the key (workflow-level included)
    cache: bool | None = (
        None  # None: default policy; False: always run; True: cache even volatile shell
    )
    outputs: tuple[str, ...] = ()  # files a shell step writes, stored and restored
    model: str | None = None
    system: str | None = None
    temperature: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    samples: int = 1  # an LLM step asked N times: N keyed samples, output a JSON array
    line: int | None = None  # line of the step's `[[steps]]` header, for messages

    @property
    def is_volatile(self) -> bool:
        """A shell step that declares nothing it reads: it must run every time."""
        return (
            self.kind is StepKind.SHELL
            and not self.sources
            and not self.outputs
            and self.cache is not True
        )

    @property
    def generation_options(self) -> dict[str, Any]:
        """Per-step generation settings that override the backend's."""
        opts = {
            "model": self.model,
            "system": self.system,
            "temperature": self.temperature,
            "seed": self.seed,
            "max_tokens": self.max_tokens,
        }
        return {k: v for k, v in opts.items() if v is not None}


@dataclass(frozen=True)
class Workflow:
    """A loaded, validated workflow (after `extends` was merged)."""

    name: str
    steps: tuple[Step, ...]
    description: str = ""
    path: str | None = None  # the file it came from (None for a string)
    origin: str = "path"  # 'project' | 'user' | 'built-in' | 'path'
    files: tuple[str, ...] = ()  # this file and every file it extends, for watch mode
    continue_on_error: bool = False
    timeout_ms: int | None = None
    backend: str | None = None
    sources: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    args: tuple[ArgSpec, ...] = ()
    concurrency: int | None = None

    def step(self, name: str) -> Step:
        """The step called `name` (KeyError if none)."""
        return self._by_name[name]

    @functools.cached_property
    def _by_name(self) -> dict[str, Step]:
        return {s.name: s for s in self.steps}

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps)


# --------------------------------------------------------------------------
# Settings (lok.toml)
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class BackendConfig:
    """`[backends.NAME]`: how to reach one backend. Secrets are never stored here, only env var names."""

    name: str
    type: str
    command: str | None = None
    url: str | None = None
    args: tuple[str, ...] = ()
    model: str | None = None
    api_key_env: str | None = None
    timeout_s: float | None = None
    concurrency: int | None = None
    enabled: bool = True
    skip_lines: int = 0
    options: dict[str, Any] = field(
        default_factory=dict
    )  # temperature, seed, max_tokens, system, num_ctx, …
    extra: dict[str, Any] = field(
        default_factory=dict
    )  # type-specific keys (prompt_via, rules, latency, …)
    # `price = { input_per_mtok, output_per_mtok, … }`: dollars per million tokens, over any
    # other price; not in the key (a price changes what an answer cost, not the answer)
    price: dict[str, float] | None = None

    def identity(self) -> dict[str, Any]:
        """What enters a step key: everything that can change an answer, never a secret."""
        return {
            "type": self.type,
            "command": self.command,
            "url": self.url,
            "args": list(self.args),
            "model": self.model,
            "skip_lines": self.skip_lines,
            "options": dict(sorted(self.options.items())),
            "extra": dict(sorted(self.extra.items())),
        }


@dataclass(frozen=True)
class TaskPrompt:
    name: str
    prompt: str


@dataclass(frozen=True)
class TaskConfig:
    """`[tasks.NAME]` of the original (`hunt`, `audit`)."""

    name: str
    description: str = ""
    backends: tuple[str, ...] = ()
    prompts: tuple[TaskPrompt, ...] = ()


@dataclass(frozen=True)
class Defaults:
    # a prompt's backends (lok ask, a multi-backend step) and the built-in commands' steps
    # run at once; False: one after another, in list order
    parallel: bool = True
    timeout_s: float = 300.0  # for `ask` and the modes; 0 = none
    command_wrapper: str | None = None
    backend: str | None = None  # default backend for LLM steps that name none
    jobs: int = 8


@dataclass(frozen=True)
class CacheConfig:
    enabled: bool = True
    ttl_hours: float | None = None  # None or 0: results never expire
    salt: str = ""
    remote: str | None = None  # a team cache: any fsspec URL (s3://bucket/prefix, file:///…)
    remote_mode: str = "read-write"  # or "read-only": look results up, never write
    storage_options: dict[str, Any] = field(default_factory=dict)  # to fsspec, verbatim


@dataclass(frozen=True)
class ExecutorConfig:
    """`[executor]`: where stale jobs run (`lok run --executor` overrides it)."""

    type: str = "local"  # "local": worker processes here; "dask": a Dask scheduler
    address: str | None = None  # the Dask scheduler (tcp://HOST:PORT)


@dataclass(frozen=True)
class ConductorConfig:
    max_rounds: int = 5
    max_tokens: int = 4096
    backend: str | None = None


@dataclass(frozen=True)
class ConsensusConfig:
    synthesizer: str | None = None
    weights: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BudgetConfig:
    max_cost_usd: float | None = None  # a run's hard cap (`--max-cost` overrides)


@dataclass(frozen=True)
class Config:
    """The merged settings: defaults < user < project < --config."""

    defaults: Defaults = field(default_factory=Defaults)
    cache: CacheConfig = field(default_factory=CacheConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    conductor: ConductorConfig = field(default_factory=ConductorConfig)
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    backends: dict[str, BackendConfig] = field(default_factory=dict)
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    files: tuple[str, ...] = ()  # the files merged, lowest layer first (for watch and messages)
    origins: dict[str, str] = field(default_factory=dict)  # dotted key -> file it came from

    def backend(self, name: str) -> BackendConfig | None:
        """The enabled-or-not backend called `name`."""
        return self.backends.get(name)
