"""The team cache: clones of one project sharing results through S3 or a shared folder.

S3 is a real S3 API server (moto's server mode, a subprocess on 127.0.0.1) reached
through s3fs; the shared folder is a plain directory. The model calls go to the
loopback LLM server, which counts them. These tests skip without the `lokfile[s3]`
extra and moto, unless LOK_REQUIRE_S3=1 (CI installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.lokrun import lok, skip_unless_required, statuses, wait_until, write
from tests.servers.llm import LLMServer

WORKFLOW = """
name = "w"
[[steps]]
name = "ask"
backend = "llm"
prompt = "<<reply:the summary>>"

[[steps]]
name = "each"
depends_on = ["ask"]
backend = "llm"
for_each = "{{ range(3) | list }}"
prompt = "<<reply:answer {{ item }}>>"

[[steps]]
name = "report"
depends_on = ["ask"]
outputs = ["report.txt"]
shell = "echo {{ steps.ask.output }} > report.txt; echo written"
"""
CALLS = 4  # ask, and each's three items
STEPS = {"ask", "each", "report"}
UNITS = 5  # results a first run records: ask, each's three items, report
ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}


def _need_fsspec(module: str = "fsspec") -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        skip_unless_required(
            "LOK_REQUIRE_S3", f"the team cache tests need {module} (the lokfile[s3] extra)"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """The endpoint of a moto S3 server started for this module."""
    _need_fsspec("s3fs")
    server = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    if not os.path.exists(server):
        skip_unless_required("LOK_REQUIRE_S3", "the S3 tests need moto's server: pip install 'moto[server]'")
    port = _free_port()
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(endpoint, timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    try:
        assert wait_until(up, timeout=30), "moto_server did not start"
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _s3fs(endpoint: str) -> Any:
    import s3fs  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return s3fs.S3FileSystem(  # the test's own client; lok's reads the environment
        key="testing",
        secret="testing",
        client_kwargs={"endpoint_url": endpoint},
        skip_instance_cache=True,
    )


@pytest.fixture
def bucket(s3: str, request: pytest.FixtureRequest) -> str:
    """A new, empty bucket for one test."""
    name = "lok-" + str(request.node.name).replace("_", "-")[:40].strip("-").lower()
    _s3fs(s3).mkdir(name)
    return name


@pytest.fixture
def llm() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv


def clone(base: Path, name: str, llm: LLMServer, cache: str = "") -> Path:
    """A fresh checkout of the project: lok.toml and the workflow, no `.lok/` history."""
    root = base / name
    (root / ".lok").mkdir(parents=True)
    backend = f'[backends.llm]\ntype = "openai"\nurl = "{llm.url}"\nmodel = "m"\n'
    (root / "lok.toml").write_text(backend + cache)
    write(root, ".lok/workflows/w.toml", WORKFLOW)
    return root


def s3_cache(endpoint: str, bucket: str, mode: str = "read-write") -> str:
    return f"""
[cache]
remote = "s3://{bucket}/team"
remote_mode = "{mode}"
[cache.storage_options]
client_kwargs = {{ endpoint_url = "{endpoint}" }}
"""


def folder_cache(folder: Path, mode: str = "read-write") -> str:
    return f'\n[cache]\nremote = "file://{folder}"\nremote_mode = "{mode}"\n'


def run(root: Path) -> tuple[dict[str, Any], str]:
    """`lok run --json w` in `root`: its document and its stderr."""
    proc = lok(root, "run", "--json", "w", env=ENV)
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc, proc.stderr


def outputs(doc: dict[str, Any], root: Path) -> dict[str, Any]:
    """What a run produced: each step's output, and the declared output file."""
    out: dict[str, Any] = {s["name"]: s["output"] for s in doc["steps"]}
    out["report.txt"] = (root / "report.txt").read_text()
    return out


def team_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "team cache" in line]


# -- S3 ------------------------------------------------------------------------------


def test_a_second_clone_sharing_an_s3_cache_sends_no_requests_and_has_the_outputs(
    tmp_path: Path, llm: LLMServer, s3: str, bucket: str
) -> None:
    first = clone(tmp_path, "first", llm, s3_cache(s3, bucket))
    doc1, err1 = run(first)
    assert len(llm.model_calls()) == CALLS
    assert team_lines(err1) == []
    expected = outputs(doc1, first)
    assert expected["ask"] == "the summary" and expected["report.txt"] == "the summary\n"

    second = clone(tmp_path, "second", llm, s3_cache(s3, bucket))
    doc2, err2 = run(second)
    assert len(llm.model_calls()) == CALLS  # not one more
    assert statuses(doc2) == dict.fromkeys(STEPS, "reused")
    assert outputs(doc2, second) == expected
    assert team_lines(err2) == []
    status = lok(second, "cache", "status", "--json", env=ENV)
    assert status.returncode == 0, status.stderr
    both = json.loads(status.stdout)["results"]
    assert both == {"local_only": 0, "remote_only": 0, "both": UNITS}


def test_after_every_remote_object_is_tampered_with_a_third_clone_still_gets_correct_outputs(
    tmp_path: Path, llm: LLMServer, s3: str, bucket: str
) -> None:
    first = clone(tmp_path, "first", llm, s3_cache(s3, bucket))
    doc1, _ = run(first)
    expected = outputs(doc1, first)
    fs = _s3fs(s3)
    objects = [p for p in fs.find(f"{bucket}/team") if "/objects/" in p]
    entries = [p for p in fs.find(f"{bucket}/team") if "/actions/" in p]
    assert len(entries) == UNITS and objects
    # Artifacts: the same length with other bytes, or cut short. Entries: still JSON, but
    # naming another artifact that is really there, or cut short.
    for n, path in enumerate(objects):
        data = fs.cat_file(path)
        fs.pipe_file(path, data[: len(data) // 2] if n % 2 else b"X" * len(data))
    some_artifact = objects[0].split("/objects/")[1].replace("/", ":", 1).replace("/", "")
    for n, path in enumerate(entries):
        if n % 2:
            fs.pipe_file(path, fs.cat_file(path)[:40])
        else:
            doc = json.loads(fs.cat_file(path))
            doc["digest"] = some_artifact
            fs.pipe_file(path, json.dumps(doc).encode())

    third = clone(tmp_path, "third", llm, s3_cache(s3, bucket))
    doc3, err3 = run(third)
    assert outputs(doc3, third) == expected
    assert len(llm.model_calls()) == 2 * CALLS  # everything was asked again
    ignored = [line for line in team_lines(err3) if "ignored" in line]
    assert ignored, err3
    # the third clone wrote the good results back: a fourth asks nothing
    fourth = clone(tmp_path, "fourth", llm, s3_cache(s3, bucket))
    doc4, err4 = run(fourth)
    assert outputs(doc4, fourth) == expected
    assert len(llm.model_calls()) == 2 * CALLS
    assert team_lines(err4) == []


def test_an_unreachable_remote_is_said_once_and_the_run_goes_on_locally(
    tmp_path: Path, llm: LLMServer
) -> None:
    _need_fsspec("s3fs")
    closed = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    cache = s3_cache(closed, "nowhere") + "config_kwargs = { retries = { max_attempts = 1 } }\n"
    root = clone(tmp_path, "offline", llm, cache)
    doc, err = run(root)
    assert statuses(doc) == dict.fromkeys(STEPS, "ran")
    assert len(llm.model_calls()) == CALLS
    lines = team_lines(err)
    assert len(lines) == 1 and "local cache only" in lines[0], err
    again, _ = run(root)  # the local cache still works
    assert statuses(again) == dict.fromkeys(STEPS, "reused")


# -- a shared folder ----------------------------------------------------------------------


def test_cache_push_to_a_shared_folder_lets_a_fresh_clone_run_with_no_requests(
    tmp_path: Path, llm: LLMServer
) -> None:
    _need_fsspec()
    shared = tmp_path / "shared"
    first = clone(tmp_path, "first", llm)  # no team cache yet: results stay local
    doc1, _ = run(first)
    assert not shared.exists()
    with (first / "lok.toml").open("a") as fh:
        fh.write(folder_cache(shared))
    push = lok(first, "cache", "push", "--json", env=ENV)
    assert push.returncode == 0, push.stderr
    pushed = json.loads(push.stdout)
    assert pushed["results"] == {"pushed": UNITS, "present": 0}
    assert pushed["artifacts"]["pushed"] > 0
    again = json.loads(lok(first, "cache", "push", "--json", env=ENV).stdout)
    assert again["results"] == {"pushed": 0, "present": UNITS}

    fresh = clone(tmp_path, "fresh", llm, folder_cache(shared))
    doc2, err2 = run(fresh)
    assert len(llm.model_calls()) == CALLS
    assert statuses(doc2) == dict.fromkeys(STEPS, "reused")
    assert outputs(doc2, fresh) == outputs(doc1, first)
    assert team_lines(err2) == []


def test_results_whose_artifacts_vanished_from_the_shared_folder_are_asked_again(
    tmp_path: Path, llm: LLMServer
) -> None:
    _need_fsspec()
    shared = tmp_path / "shared"
    first = clone(tmp_path, "first", llm, folder_cache(shared))
    doc1, _ = run(first)
    shutil.rmtree(shared / "objects")  # the entries stay, naming artifacts that are gone
    second = clone(tmp_path, "second", llm, folder_cache(shared))
    doc2, err2 = run(second)
    assert outputs(doc2, second) == outputs(doc1, first)
    assert len(llm.model_calls()) == 2 * CALLS
    assert any("is missing" in line for line in team_lines(err2)), err2


def test_cache_pull_fetches_what_a_workflow_needs_so_it_then_runs_without_the_remote(
    tmp_path: Path, llm: LLMServer
) -> None:
    _need_fsspec()
    shared = tmp_path / "shared"
    first = clone(tmp_path, "first", llm, folder_cache(shared))
    doc1, _ = run(first)
    second = clone(tmp_path, "second", llm, folder_cache(shared))
    pull = lok(second, "cache", "pull", "w", "--json", env=ENV)
    assert pull.returncode == 0, pull.stderr
    pulled = json.loads(pull.stdout)
    assert pulled["results"]["pulled"] == UNITS
    assert (pulled["fresh"], pulled["stale"]) == (len(STEPS), 0)
    # the team cache is gone (a laptop on a train): what was pulled is enough
    write(second, "lok.toml", (second / "lok.toml").read_text().split("[cache]")[0])
    doc2, _ = run(second)
    assert len(llm.model_calls()) == CALLS
    assert statuses(doc2) == dict.fromkeys(STEPS, "reused")
    assert outputs(doc2, second) == outputs(doc1, first)


def test_a_read_only_client_reads_the_team_cache_and_never_writes_it(
    tmp_path: Path, llm: LLMServer
) -> None:
    _need_fsspec()
    shared = tmp_path / "shared"
    reader = clone(tmp_path, "reader", llm, folder_cache(shared, "read-only"))
    run(reader)
    assert len(llm.model_calls()) == CALLS
    assert not shared.exists() or not any(p.is_file() for p in shared.rglob("*"))
    push = lok(reader, "cache", "push", env=ENV)
    assert push.returncode == 2
    assert "read-only" in push.stderr and "Hint:" in push.stderr
    # what CI writes, a read-only client uses
    changed = WORKFLOW.replace("the summary", "another summary")
    ci = clone(tmp_path, "ci", llm, folder_cache(shared))
    write(ci, ".lok/workflows/w.toml", changed)
    run(ci)
    asked = len(llm.model_calls())
    write(reader, ".lok/workflows/w.toml", changed)
    doc, _ = run(reader)
    assert len(llm.model_calls()) == asked
    assert statuses(doc) == dict.fromkeys(STEPS, "reused")


def test_cache_status_counts_results_here_there_and_in_both(
    tmp_path: Path, llm: LLMServer
) -> None:
    _need_fsspec()
    shared = tmp_path / "shared"
    first = clone(tmp_path, "first", llm, folder_cache(shared))
    run(first)
    other = clone(tmp_path, "other", llm, folder_cache(shared, "read-only"))
    write(other, ".lok/workflows/w.toml", WORKFLOW.replace("the summary", "mine"))
    run(other)  # ask, each and report run again here (report's input changed); each reused
    proc = lok(other, "cache", "status", "--json", env=ENV)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["mode"] == "read-only" and doc["remote"] == f"file://{shared}"
    assert doc["results"] == {"local_only": 2, "remote_only": 2, "both": 3}
    text = lok(other, "cache", "status", env=ENV)
    assert "local only" in text.stdout and "results" in text.stdout


# -- settings ------------------------------------------------------------------------


def test_a_credential_among_the_storage_options_is_refused_with_its_line(
    tmp_path: Path, llm: LLMServer
) -> None:
    root = clone(
        tmp_path,
        "leaky",
        llm,
        '\n[cache]\nremote = "s3://b/p"\n[cache.storage_options]\nsecret = "hunter2"\n',
    )
    proc = lok(root, "run", "w", env=ENV)
    assert proc.returncode == 2
    assert "lok.toml:9:" in proc.stderr and "credential" in proc.stderr
    assert "environment" in proc.stderr and "Traceback" not in proc.stderr


def test_cache_commands_without_a_remote_say_how_to_set_one(tmp_path: Path, llm: LLMServer) -> None:
    root = clone(tmp_path, "alone", llm)
    proc = lok(root, "cache", "status")
    assert proc.returncode == 2
    assert "[cache] remote" in proc.stderr and "Hint:" in proc.stderr


# -- the remote entry, in process ------------------------------------------------------


def _entry(outputs: dict[str, str] | None = None) -> Any:
    from lokfile import hashing
    from lokfile.store.rundb import KeyEntry

    key = hashing.digest_text("a key")
    digest = hashing.digest_text("an answer")
    return KeyEntry(key, digest, 1700000000.0, 1.5, outputs or {}, {"model": "m", "ended": 2.0})


def test_a_remote_entry_round_trips_and_is_refused_when_edited_cut_short_or_moved() -> None:
    from lokfile import hashing
    from lokfile.store.tiered import decode_entry, encode_entry

    entry = _entry({"out/report.txt": hashing.digest_text("report")})
    data = encode_entry(entry, "step", "wf")
    assert decode_entry(entry.key, data) == (entry, "step", "wf")
    edited = data.replace(b'"duration":1.5', b'"duration":0.5')
    with pytest.raises(ValueError, match="check digest"):
        decode_entry(entry.key, edited)
    with pytest.raises(ValueError, match="not JSON"):
        decode_entry(entry.key, data[: len(data) // 2])
    with pytest.raises(ValueError, match="another key"):
        decode_entry(hashing.digest_text("another key"), data)


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "a/../../b", "a//b"])
def test_a_remote_entry_naming_an_output_outside_the_project_is_refused_even_if_well_made(
    path: str,
) -> None:
    """A writer who recomputes the check digest is trusted with results, never with paths."""
    from lokfile import hashing
    from lokfile.store.tiered import decode_entry, encode_entry

    entry = _entry({path: hashing.digest_text("x")})
    with pytest.raises(ValueError, match="outside the project"):
        decode_entry(entry.key, encode_entry(entry, "step", "wf"))
