#!/usr/bin/env python3
"""LLM fan-out: one `for_each` step of many prompts against a slow loopback server.

A threaded HTTP server on 127.0.0.1 speaks just enough of Ollama's /api/chat
(a streamed NDJSON reply) and sleeps --latency seconds before every answer.
lok talks to it through an `ollama` backend with `concurrency = C` and runs
`lok run -j J fanout`, one step whose for_each is a literal list of N prompts.

Measured per configuration:
  * cold runs (a fresh store and lok.db each time, the old ones moved aside, see
    benchlib.Trash): wall time, the ideal N x latency / C,
    efficiency = ideal / wall, and the server's own view (first request to
    last answer, peak requests in flight);
  * peak memory: summed RSS of lok and every process under it, sampled every
    50 ms, and the largest single child's ru_maxrss, in one more cold run that
    is not timed (the sampler is a thread of this process, the server's);
  * a rerun with nothing changed: wall time, and the requests the server saw
    (must be 0);
  * the floor: the same requests from a bare asyncio client in this process (none of
    lok's code), the best any client reaches against this server on this machine.

Defaults run two configurations: 1000 prompts at concurrency 32 (-j 32), and
50 prompts at concurrency 1 (extrapolated linearly to 1000). Results merge
into results/fanout.json keyed by (prompts, concurrency, jobs, rate-limited).

A configuration written PROMPTS:CONCURRENCY:JOBS:429 runs against a server
that rate-limits: the first request of every fourth prompt is answered
`429 Too Many Requests` with `Retry-After: --retry-after` (so 20 % of all
requests are 429s), and the server's limit is the backend concurrency. It
counts requests that arrived while `limit` were already in flight (over the
limit) and retries that came before their Retry-After had passed (early);
both must be 0. Throughput is prompts per second of wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (
    BENCH_DIR,
    REPO,
    RssSampler,
    Trash,
    git_state,
    load1,
    log,
    machine,
    save_json,
    snapshot_lok,
    trash_options,
    wait_for_quiet,
)


class SlowServer(ThreadingHTTPServer):
    """Answers every /api/chat after `latency` seconds; counts requests and concurrency."""

    daemon_threads = True
    request_queue_size = 256  # 32+ clients connect at once; the default backlog of 5 drops some

    def __init__(self, latency: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.latency = latency
        self.lock = threading.Lock()
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.first = 0.0
        self.last = 0.0
        self.reset()

    @property
    def url(self) -> str:
        """The base URL for lok's `url` key."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def done(self) -> None:
        """One request answered (or failed)."""
        with self.lock:
            self.in_flight -= 1
            self.last = time.perf_counter()

    def reset(self) -> None:
        """Zero the counters before a run."""
        with self.lock:
            self.requests = self.in_flight = self.peak_in_flight = 0
            self.first = self.last = 0.0
            self.limited: dict[str, float] = {}  # prompt -> when its Retry-After ends
            self.fresh_prompts = self.rate_limited = self.over_limit = self.early = 0

    def admit(self, prompt: str) -> float | None:
        """Called with the lock held for every request: seconds of Retry-After to answer
        429 with, or None to serve it. The plain server serves everything."""
        return None


class RateLimitedServer(SlowServer):
    """Answers 429 + Retry-After to the first request of every fourth prompt (20 % of
    all requests once they are retried), and counts clients that break its rules."""

    def __init__(self, latency: float, limit: int, retry_after: int) -> None:
        super().__init__(latency)
        self.limit = limit
        self.retry_after = retry_after

    def admit(self, prompt: str) -> float | None:
        now = time.perf_counter()
        if self.in_flight > self.limit:  # this request is already counted in flight
            self.over_limit += 1
        until = self.limited.get(prompt)
        if until is not None:
            if now < until:
                self.early += 1
            return None
        self.fresh_prompts += 1
        if self.fresh_prompts % 4 == 1:
            self.limited[prompt] = now + self.retry_after
            self.rate_limited += 1
            return float(self.retry_after)
        return None


class _Handler(BaseHTTPRequestHandler):
    server: SlowServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; without TCP_NODELAY a kept-alive connection
    # stalls ~40 ms on each answer (Nagle against the client's delayed ACK), as real
    # servers avoid by setting it.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a thousand access lines would drown the report

    def do_POST(self) -> None:
        s = self.server
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        prompt = body["messages"][-1]["content"]
        with s.lock:
            s.requests += 1
            s.in_flight += 1
            s.peak_in_flight = max(s.peak_in_flight, s.in_flight)
            s.first = s.first or time.perf_counter()
            wait = s.admit(prompt)
        answered = False
        try:
            if wait is not None:
                self._too_many(wait)
                answered = True
                return
            time.sleep(s.latency)
            lines = [
                {"model": body.get("model"), "message": {"content": f"answer to {prompt}"}},
                {"model": body.get("model"), "done": True, "prompt_eval_count": 1, "eval_count": 1},
            ]
            data = "".join(json.dumps(x) + "\n" for x in lines).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Content-Length", str(len(data)))
            # Count the request as answered before the client can see the answer: with
            # keep-alive the client's next request may otherwise arrive (and be counted)
            # before this thread gets back to its bookkeeping, showing 33 in flight for 32.
            s.done()
            answered = True
            self.end_headers()
            self.wfile.write(data)
        finally:
            if not answered:
                s.done()

    def _too_many(self, wait: float) -> None:
        data = b'{"error": "rate limited, slow down"}'
        self.send_response(429)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", str(int(wait)))
        self.send_header("Content-Length", str(len(data)))
        self.server.done()
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        data = b'{"models": [{"name": "bench"}]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def write_project(
    ws: Path, url: str, prompts: int, concurrency: int, trash: Trash | None = None
) -> None:
    """lok.toml with the slow backend, and .lok/workflows/fanout.toml with N prompts."""
    if trash is not None:
        trash.aside(ws)
    elif ws.exists():
        shutil.rmtree(ws)
    (ws / ".lok" / "workflows").mkdir(parents=True)
    (ws / "lok.toml").write_text(
        f'[backends.slow]\ntype = "ollama"\nurl = "{url}"\nmodel = "bench"\n'
        f"concurrency = {concurrency}\ntimeout = 60\n"
    )
    items = json.dumps([f"prompt {i}" for i in range(prompts)])
    (ws / ".lok" / "workflows" / "fanout.toml").write_text(
        'name = "fanout"\n\n[[steps]]\nname = "ask"\nbackend = "slow"\n'
        f"for_each = '{items}'\n"
        'prompt = "Say something about {{ item }}"\n'
    )


def one_run(
    lok: str, ws: Path, jobs: int, server: SlowServer, timeout: float, rss: bool = False
) -> dict[str, Any]:
    """Run lok once; return timings and the server's counts. With `rss` the memory sampler
    is attached: a thread of this process, which is also the server's, so a sampled run is
    not a timed one (the server's 128 threads wait on the sampler's /proc walks)."""
    server.reset()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [lok, "run", "-j", str(jobs), "--json", "fanout"],
        cwd=ws,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    sampler = RssSampler(proc.pid)
    if rss:
        sampler.__enter__()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if rss:
            sampler.__exit__()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    status = "?"
    try:
        doc = json.loads(out)
        status = doc.get("status", "?")
    except json.JSONDecodeError:
        pass
    return {
        "rc": proc.returncode,
        "status": status,
        "wall": wall,
        "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "peak_tree_rss_mb": round(sampler.peak / 2**20, 1) if rss else None,
        "rss_samples": sampler.samples,
        "max_child_maxrss_mb": round(after.ru_maxrss / 1024, 1),  # KiB on Linux
        "requests": server.requests,
        "peak_in_flight": server.peak_in_flight,
        "rate_limited": server.rate_limited,
        "over_limit": server.over_limit,
        "early_retries": server.early,
        "server_span": (server.last - server.first) if server.requests else 0.0,
        # start-up and planning before the first request; recording after the last answer
        "before_first": (server.first - t0) if server.requests else None,
        "after_last": (t0 + wall - server.last) if server.requests else None,
        "stderr_tail": err[-300:].decode(errors="replace") if proc.returncode else "",
    }


def bare_client(url: str, prompts: int, conc: int) -> float:
    """The harness's floor: wall seconds for `prompts` requests at `conc` in flight from
    the leanest client there is (asyncio streams, one kept-alive connection per slot, no
    parsing beyond Content-Length, none of lok's code), in this process beside the server
    as lok's calls are. What lok adds is its wall time above this."""
    import asyncio

    host, port = url.removeprefix("http://").split(":")

    async def slot(queue: list[int]) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while queue:
            i = queue.pop()
            body = json.dumps(
                {"model": "bench", "messages": [{"role": "user", "content": f"floor {i}"}]}
            ).encode()
            writer.write(
                b"POST /api/chat HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (url.encode(), len(body), body)
            )
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
        writer.close()

    async def run() -> float:
        queue = list(range(prompts))
        t0 = time.perf_counter()
        await asyncio.gather(*(slot(queue) for _ in range(conc)))
        return time.perf_counter() - t0

    return asyncio.run(run())


def bench_config(
    lok: str,
    work: Path,
    prompts: int,
    conc: int,
    jobs: int,
    latency: float,
    cold_runs: int,
    quiet: tuple[float, float],
    retry_after: int | None = None,
    trash: Trash | None = None,
) -> dict[str, Any]:
    """Cold runs (fresh .lok each) and one no-change rerun for one configuration
    (against a rate-limiting server when `retry_after` is set)."""
    server = (
        SlowServer(latency)
        if retry_after is None
        else RateLimitedServer(latency, conc, retry_after)
    )
    trash = trash or Trash(work / ".trash")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ws = work / f"fanout-{prompts}-c{conc}-j{jobs}{'-429' if retry_after else ''}"
        write_project(ws, server.url, prompts, conc, trash)
        timeout = max(120.0, 4 * prompts * latency / conc)
        cold = []
        busy = wait_for_quiet(quiet[0], quiet[1])
        load0 = load1()
        memory: dict[str, Any] = {}
        for i in range(-1, cold_runs):  # -1: the memory run, sampled and not timed
            trash.aside(ws / ".lok" / "runs")  # the run folders and the store
            for f in (ws / ".lok").glob("lok.db*"):
                trash.aside(f)
            r = one_run(lok, ws, jobs, server, timeout, rss=i < 0)
            if i < 0:
                memory = r
                log(f"  memory run: peak RSS {r['peak_tree_rss_mb']} MB, rc {r['rc']}")
                continue
            cold.append(r)
            log(
                f"  cold {i + 1}: {r['wall']:.2f} s, {r['requests']} requests "
                f"({r['rate_limited']} answered 429, {r['over_limit']} over the limit, "
                f"{r['early_retries']} retried early), "
                f"peak in flight {r['peak_in_flight']}, rc {r['rc']}"
            )
        rerun = one_run(lok, ws, jobs, server, timeout)
        log(f"  rerun: {rerun['wall']:.3f} s, {rerun['requests']} requests, rc {rerun['rc']}")
        floor = None
        if retry_after is None:
            server.reset()
            floor = bare_client(server.url, prompts, conc)
            log(f"  floor (a bare asyncio client, same server): {floor:.2f} s")
    finally:
        server.shutdown()
        server.server_close()
    ideal = prompts * latency / conc
    ideal_tight = -(-prompts // conc) * latency
    med = statistics.median(r["wall"] for r in cold)
    limited: dict[str, Any] = {}
    if retry_after is not None:
        # a prompt answered 429 cannot finish before its Retry-After plus one answer; the
        # last of them is sent about when the first pass ends, so this bound is approximate
        bound = ideal_tight + retry_after + latency
        limited = {
            "rate_limited": True,
            "retry_after": retry_after,
            "bound_approx": bound,
            "efficiency_vs_bound": bound / med,
            "throughput_per_s": prompts / med,
            "rate_limited_requests": statistics.median(r["rate_limited"] for r in cold),
            "over_limit": max(r["over_limit"] for r in cold),
            "early_retries": max(r["early_retries"] for r in cold),
        }
    return {
        "prompts": prompts,
        "concurrency": conc,
        "jobs": jobs,
        "latency": latency,
        "ideal": ideal,
        "ideal_tight": ideal_tight,
        "cold_median": med,
        "efficiency": ideal / med,
        # the same requests from a bare client: the most a client can reach against this
        # server on this machine (the server shares lok's cores), and lok's overhead above it
        "floor_wall": floor,
        "floor_efficiency": ideal / floor if floor else None,
        "over_floor_s": med - floor if floor else None,
        "server_span_median": statistics.median(r["server_span"] for r in cold),
        "peak_tree_rss_mb": memory["peak_tree_rss_mb"],
        "memory_run": memory,
        "extrapolated_1000": med * 1000 / prompts if prompts != 1000 else None,
        "cold": cold,
        "rerun": rerun,
        "load1": [load0, load1()],
        "busy_cores_before": busy,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **limited,
        "ok": all(
            r["rc"] == 0
            and r["requests"] == prompts + r["rate_limited"]
            and r["over_limit"] == 0
            and r["early_retries"] == 0
            for r in [*cold, memory]
        )
        and rerun["rc"] == 0
        and rerun["requests"] == 0,
    }


def main() -> None:
    """Parse flags, run each configuration, merge into the results file."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lok", default=str(REPO / ".venv" / "bin" / "lok"))
    ap.add_argument("--snapshot", metavar="REV", help="run lok from `git archive REV`")
    ap.add_argument(
        "--configs",
        default="1000:32:32,50:1:32",
        help="comma list of PROMPTS:CONCURRENCY:JOBS[:429] (default: %(default)s); "
        "a trailing :429 rate-limits 20%% of requests with Retry-After",
    )
    ap.add_argument(
        "--retry-after", type=int, default=1, help="seconds the 429 answers ask to wait"
    )
    ap.add_argument("--latency", type=float, default=0.1, help="server seconds per request")
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--quiet-cores", type=float, default=0.5, help="see compare.py")
    ap.add_argument("--quiet-wait", type=float, default=60.0)
    ap.add_argument("--work", default="/tmp/lokbench-fanout")
    trash_options(ap, "a cold run's .lok/runs and lok.db are cleared")
    ap.add_argument("--results", default=str(BENCH_DIR / "results" / "fanout.json"))
    a = ap.parse_args()

    path = Path(a.results)
    doc: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    doc.setdefault("configs", [])
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    lok = snapshot_lok(a.snapshot, work) if a.snapshot else a.lok
    doc["meta"] = {
        "machine": machine(),
        "lok": lok,
        "lok_code": git_state(a.snapshot),
        "last_command": " ".join(sys.argv),
        "clean": a.clean,
    }
    trash = Trash(work / ".trash", delete=a.clean == "delete")
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"  # loopback never goes through a proxy
    for spec in a.configs.split(","):
        fields = spec.split(":")
        prompts, conc, jobs = (int(x) for x in fields[:3])
        retry_after = a.retry_after if fields[3:] == ["429"] else None
        log(
            f"{prompts} prompts, backend concurrency {conc}, -j {jobs}, latency {a.latency} s"
            + (f", 429 + Retry-After {retry_after} s to 20 % of requests" if retry_after else "")
        )
        rec = bench_config(
            lok,
            work,
            prompts,
            conc,
            jobs,
            a.latency,
            a.cold_runs,
            (a.quiet_cores, a.quiet_wait),
            retry_after,
            trash,
        )
        log(
            f"  -> median {rec['cold_median']:.2f} s vs ideal {rec['ideal']:.2f} s: "
            f"{rec['efficiency']:.0%}; ok={rec['ok']}"
        )

        def key(c: dict[str, Any]) -> tuple[int, int, int, bool]:
            return (c["prompts"], c["concurrency"], c["jobs"], bool(c.get("rate_limited")))

        doc["configs"] = [c for c in doc["configs"] if key(c) != key(rec)]
        doc["configs"].append(rec)
        save_json(path, doc)
    if not a.keep_trash:
        trash.empty()


if __name__ == "__main__":
    main()
