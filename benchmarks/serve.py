"""`lstmgen serve` under load, over loopback, in one run: a real server process and asyncio clients on raw
sockets (cheap, so the clients take little of the CPU the server needs).

- throughput: 64 concurrent streaming clients vs one client alone, aggregate tokens/s and the ratio;
- time to first token: one client alone (beside one decode step and the prompt's read, timed in-process on
  the same graph, and the HTTP round trip of GET /health), and p50/p95 with 64 clients;
- load: N requests (10,000) from 64 concurrent clients with random valid parameters, while a few clients
  send their bodies a byte per second: failures, slots left occupied, the server's resident memory after
  warm-up and at the end;
- faults: clients that disconnect mid-stream; malformed JSON, wrong types, unknown models, oversized bodies;
  then the next request must give exactly `lstmgen sample --seed`'s text.

The model is configs/char.yaml's shape (2 x 256 LSTM, 61 characters) trained for 20 steps on data/jokes.csv
(speed does not depend on training), plus a copy with <eor> made impossible, so throughput streams all run
to max_tokens. Every loop is bounded and ends by itself.

Usage (repo root, after `make install`):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve.py [--requests 10000] [--tokens 1000] [--disconnects 1000]
"""

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 64


def rss_kib(pid: int) -> int:
    """Resident memory of the server process and its children (the decoding engine), KiB."""
    total = 0
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for p in [pid, *map(int, children)]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


class Http:
    """Minimal HTTP/1.1 over asyncio streams: one connection per request (Connection: close)."""

    def __init__(self, port: int):
        self.port = port

    async def request(self, method: str, path: str, body: bytes | None = None, *, first_event=None,
                      ctype: str = "application/json") -> tuple[int, bytes]:  # fmt: skip
        """(status, whole response). first_event: a list that gets the time the first `data: ` arrived."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        if body is not None:
            head += f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"\r\n" + (body or b""))
        chunks, tail = [], b""  # joined once at the end: += on a growing bytes object is quadratic
        try:
            while chunk := await reader.read(65536):
                chunks.append(chunk)
                if first_event is not None and not first_event and b"data: " in tail + chunk:
                    first_event.append(time.perf_counter())
                tail = chunk[-8:]
        except ConnectionError:  # reset by the server (a refused body it stopped reading): status -1
            if not b"".join(chunks).startswith(b"HTTP/1.1 "):
                return -1, b"".join(chunks)
        finally:
            writer.close()
        data = b"".join(chunks)
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
        return status, data

    async def complete(self, body: dict) -> dict:
        """A completion; {status, ttft (s), tokens, data}."""
        t0, first = time.perf_counter(), []
        status, data = await self.request("POST", "/v1/completions", json.dumps(body).encode(), first_event=first)
        tokens = sum(map(int, re.findall(rb'"completion_tokens": ?(\d+)', data)))
        ttft = first[0] - t0 if first else None
        return {"status": status, "ttft": ttft, "tokens": tokens, "data": data, "seconds": time.perf_counter() - t0}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def random_body(rnd: random.Random) -> tuple[dict, int]:
    """A random valid completion request, and how many choices it must answer with."""
    prompts = ["Hey, ", "Why did", "", "What do you call a", "I told my"]
    prompt = rnd.choice(prompts) if rnd.random() < 0.8 else rnd.sample(prompts, rnd.randint(1, 3))
    n = rnd.randint(1, 3)
    body = {"model": "char", "prompt": prompt, "n": n, "max_tokens": rnd.randint(1, 120),
            "temperature": rnd.choice([0, 0.5, 0.8, 1.0, 1.5]), "stream": rnd.random() < 0.5}  # fmt: skip
    for key, value in (("top_p", rnd.uniform(0.1, 1.0)), ("top_k", rnd.randint(0, 40)), ("seed", rnd.randrange(2**40)),
                       ("repetition_penalty", rnd.uniform(0.8, 1.5)), ("no_repeat_ngram", rnd.randint(0, 4)),
                       ("stop", rnd.choice(["?", ["?", "."], " the"])), ("echo", True), ("user", "bench"),
                       ("stream_options", {"include_usage": True})):  # fmt: skip
        if rnd.random() < 0.3:
            body[key] = value
    return body, n * (len(prompt) if isinstance(prompt, list) else 1)


def answered(result: dict, body: dict, choices: int) -> bool:
    """Whether a load request was answered in full."""
    data = result["data"]
    if result["status"] != 200:
        return False
    if body["stream"]:
        return b"\ndata: [DONE]\n" in data and data.count(b'"finish_reason": "') == choices
    return json.loads(data.split(b"\r\n\r\n", 1)[1]).get("choices", []).__len__() == choices


async def throughput(http: Http, clients: int, tokens: int, rounds: int) -> dict:
    """`clients` clients, each `rounds` streaming requests one after another, of tokens/2 to 3 tokens/2
    tokens (drawn with a fixed seed), so that after the first round requests arrive one at a time."""
    body = {"model": "endless", "prompt": "Why did", "stream": True, "temperature": 1.0,
            "stream_options": {"include_usage": True}}  # fmt: skip
    rnd = random.Random(clients)
    lengths = [[rnd.randint(tokens // 2, 3 * tokens // 2) for _ in range(rounds)] for _ in range(clients)]

    async def client(i: int):
        return [await http.complete({**body, "seed": i * rounds + r, "max_tokens": lengths[i][r]})
                for r in range(rounds)]  # fmt: skip

    t0 = time.perf_counter()
    per_client = await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.perf_counter() - t0
    results = [r for rs in per_client for r in rs]
    asked = [n for ns in lengths for n in ns]
    assert all(r["status"] == 200 and r["tokens"] == n for r, n in zip(results, asked, strict=True)), "failed"
    # The first round arrives all at once; later requests arrive one at a time into a running batch.
    return {"tokens_s": sum(r["tokens"] for r in results) / wall, "ttft": [r["ttft"] for r in results],
            "ttft_later": [r["ttft"] for rs in per_client for r in rs[1:]]}  # fmt: skip


async def load(http: Http, pid: int, requests: int, slow: int, seed: int) -> dict:
    rnd = random.Random(seed)
    jobs = [random_body(rnd) for _ in range(requests)]
    failures, done, rss = [], 0, {}
    warm = min(500, requests // 10)

    async def worker(queue: list):
        nonlocal done
        while queue:
            body, choices = queue.pop()
            result = await http.complete(body)
            if not answered(result, body, choices):
                failures.append((body, result["status"], result["data"][:300]))
            done += 1
            if done == warm:
                rss["warm"] = rss_kib(pid)

    async def slow_client(i: int) -> tuple[int, float]:
        """Send a body a byte per second until the server answers."""
        body = json.dumps({"model": "char", "prompt": "Hey", "max_tokens": 5}).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", http.port)
        writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))  # fmt: skip
        t0 = time.perf_counter()
        try:
            for byte in body:
                writer.write(bytes([byte]))
                await writer.drain()
                try:
                    answer = await asyncio.wait_for(reader.read(65536), 1.0)
                    return int(answer.split(b" ", 2)[1]), time.perf_counter() - t0
                except asyncio.TimeoutError:
                    pass
            return 0, time.perf_counter() - t0
        except ConnectionError:
            return -1, time.perf_counter() - t0
        finally:
            writer.close()

    queue = list(reversed(jobs))
    t0 = time.perf_counter()
    slow_tasks = [asyncio.ensure_future(slow_client(i)) for i in range(slow)]
    await asyncio.gather(*(worker(queue) for _ in range(CLIENTS)))
    wall = time.perf_counter() - t0
    slow_results = await asyncio.gather(*slow_tasks)
    rss["end"] = rss_kib(pid)
    return {"failures": failures, "wall": wall, "rss": rss, "slow": slow_results}


async def disconnects(http: Http, count: int) -> float:
    """`count` clients (64 at a time) that close their connection after the first event of a long stream."""
    body = json.dumps({"model": "endless", "prompt": "Why", "max_tokens": 4000, "n": 2, "stream": True}).encode()
    left = list(range(count))

    async def client():
        while left:
            left.pop()
            reader, writer = await asyncio.open_connection("127.0.0.1", http.port)
            writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
            data = b""
            while b"data: " not in data:
                chunk = await reader.read(4096)
                if not chunk:
                    break
                data += chunk
            writer.close()

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    t0 = time.perf_counter()
    while True:
        _, data = await http.request("GET", "/health")
        if json.loads(data.split(b"\r\n\r\n", 1)[1])["streams"] == 0 or time.perf_counter() - t0 > 30:
            return time.perf_counter() - t0


async def bad_requests(http: Http, each: int) -> dict:
    kinds = {
        "malformed JSON": (b'{"model": "char", "prompt": "Hey', 400),
        "wrong types": (json.dumps({"model": "char", "max_tokens": "many", "temperature": [1]}).encode(), 400),
        "unknown models": (json.dumps({"model": "no-such-model", "prompt": "Hey"}).encode(), 404),
        "oversized bodies": (json.dumps({"model": "char", "prompt": "x" * (2 << 20)}).encode(), 413),
    }
    out = {}
    for name, (body, want) in kinds.items():
        left, statuses = list(range(each)), []

        async def client(left: list, statuses: list, body: bytes):
            while left:
                left.pop()
                statuses.append(await http.request("POST", "/v1/completions", body))

        await asyncio.gather(*(client(left, statuses, body) for _ in range(CLIENTS)))
        good = sum(s == want and b'"error"' in d for s, d in statuses)
        out[name] = (good, each, want, sum(s == -1 for s, _ in statuses))
    return out


def prepare(home: str) -> None:
    os.environ["LSTMGEN_HOME"] = home
    cli = [sys.executable, "-m", "lstmgen"]
    subprocess.run([*cli, "prepare", str(ROOT / "data/jokes.csv"), "--quiet"], check=True)
    sets = ["train.max_steps=20", "train.max_time=null", "train.eval_every=10", "train.checkpoint_every=10",
            "train.device=cpu"]  # fmt: skip
    subprocess.run([*cli, "train", "-c", str(ROOT / "configs/char.yaml"), "--quiet",
                    *sum([["--set", s] for s in sets], [])], check=True)  # fmt: skip
    from lstmgen import checkpoint, registry
    from lstmgen.onnx_graph import save_graph

    ckpt = checkpoint.load("char")  # a copy that never ends a text by itself: every stream runs to max_tokens
    ckpt.state_dict["head.bias"][ckpt.make_vocab().eor_id] = -1e4
    ckpt.name = "endless"
    d = registry.entry_dir("model", "endless")
    d.mkdir(parents=True)
    ckpt.path = d / "best.pt"
    ckpt.save(ckpt.path)
    save_graph(ckpt)


def step_times(prompt: str) -> tuple[float, float]:
    """One decode step (1, 1) and the prompt's read (1, T + 1), median seconds, on the server's graph."""
    import numpy as np

    from lstmgen.inference import load_for_inference

    loaded = load_for_inference("char")
    b, ids = loaded.backend, loaded.vocab.encode(prompt)
    h, c = b.zero_state(1)

    def timed(x, repeats):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            b.forward(x, h, c)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    return timed(np.array([[5]]), 2000), timed(np.array([[loaded.vocab.eor_id, *ids]]), 500)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=10_000, help="load: requests from 64 clients")
    p.add_argument("--tokens", type=int, default=1000, help="throughput: tokens per streaming request")
    p.add_argument("--rounds", type=int, default=3, help="throughput: requests per client, one after another")
    p.add_argument("--disconnects", type=int, default=1000)
    p.add_argument("--bad", type=int, default=250, help="requests of each bad kind")
    p.add_argument("--slow", type=int, default=8, help="clients sending a byte per second during the load")
    p.add_argument("--body-seconds", type=float, default=10, help="the server's --limit-body-seconds")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as home:
        prepare(home)
        env = {**os.environ, "LSTMGEN_HOME": home, "OMP_NUM_THREADS": "1"}
        server = subprocess.Popen([sys.executable, "-m", "lstmgen", "serve", "--port", "0", "--limit-body-seconds",
                                   str(a.body_seconds)], env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            line = server.stderr.readline()
            port = int(re.search(r"127\.0\.0\.1:(\d+)", line)[1])
            http = Http(port)
            step, read = step_times("Why did")
            results = asyncio.run(run(http, server.pid, a))
            next_ok = check_next(http, home)
            server.terminate()
            code = server.wait(60)
        finally:
            if server.poll() is None:
                server.kill()
    report(a, step, read, results, next_ok, code)


async def run(http: Http, pid: int, a) -> dict:
    out = {}
    for _ in range(3):  # warm-up: first requests pay for lazy imports and allocations
        await http.complete({"model": "endless", "prompt": "Why", "max_tokens": 200, "stream": True})
    floor = []
    for _ in range(50):
        t0 = time.perf_counter()
        await http.request("GET", "/health")
        floor.append(time.perf_counter() - t0)
    out["floor"] = statistics.median(floor)
    short = []
    for i in range(50):  # one client alone: time to first token of short requests
        short.append((await http.complete({"model": "char", "prompt": "Why did", "max_tokens": 1, "stream": True,
                                           "seed": i}))["ttft"])  # fmt: skip
    out["ttft1"] = short
    out["one"] = await throughput(http, 1, a.tokens, a.rounds)
    out["many"] = await throughput(http, CLIENTS, a.tokens, a.rounds)
    out["load"] = await load(http, pid, a.requests, a.slow, seed=1)
    _, data = await http.request("GET", "/health")
    out["health"] = json.loads(data.split(b"\r\n\r\n", 1)[1])
    t0 = time.perf_counter()
    out["freed"] = await disconnects(http, a.disconnects)
    out["disconnect_wall"] = time.perf_counter() - t0
    out["bad"] = await bad_requests(http, a.bad)
    return out


def check_next(http: Http, home: str) -> bool:
    """After everything: a seeded request gives exactly `lstmgen sample --seed`'s text."""
    body = {"model": "char", "prompt": "Hey, ", "max_tokens": 80, "n": 2, "seed": 7, "top_p": 0.9}
    result = asyncio.run(http.complete(body))
    served = [c["text"] for c in json.loads(result["data"].split(b"\r\n\r\n", 1)[1])["choices"]]
    r = subprocess.run([sys.executable, "-m", "lstmgen", "sample", "Hey, ", "-m", "char", "--max-tokens", "80", "-n",
                        "2", "--seed", "7", "--top-p", "0.9", "--json"], capture_output=True, text=True,
                       env={**os.environ, "LSTMGEN_HOME": home}, check=True)  # fmt: skip
    return served == [json.loads(line)["completion"] for line in r.stdout.splitlines()]


def report(a, step: float, read: float, r: dict, next_ok: bool, code: int) -> None:
    ms = 1000
    one, many, load_ = r["one"], r["many"], r["load"]
    print(f"CPU: {cpu()}")
    print(f"model: configs/char.yaml's shape (2 x 256, 61 chars); one decode step {step * ms:.3f} ms, "
          f"the prompt's read {read * ms:.3f} ms (in-process, same graph); GET /health round trip "
          f"{r['floor'] * ms:.2f} ms")  # fmt: skip
    print(f"throughput, {a.rounds} streaming requests per client, one after another, of {a.tokens // 2:,} to "
          f"{3 * a.tokens // 2:,} tokens:")
    print(f"  1 client     {one['tokens_s']:9,.0f} tokens/s")
    ratio = many["tokens_s"] / one["tokens_s"]
    print(f"  {CLIENTS} clients   {many['tokens_s']:9,.0f} tokens/s   {ratio:.1f}x one client")
    ttft1 = statistics.median(r["ttft1"])
    bound = 2 * step + read
    print(f"time to first token, 1 client: p50 {ttft1 * ms:.2f} ms (target <= 2 x step + read = {bound * ms:.2f} ms; "
          f"minus the HTTP round trip: {(ttft1 - r['floor']) * ms:.2f} ms)")  # fmt: skip
    ttft = [t for t in many["ttft"] if t is not None]
    p50, p95 = pct(ttft, 0.5) * ms, pct(ttft, 0.95) * ms
    later = many["ttft_later"] or ttft
    print(f"time to first token, {CLIENTS} clients: p50 {p50:.1f} ms, p95 {p95:.1f} ms; requests after the first "
          f"round (joining a running batch): p50 {pct(later, 0.5) * ms:.1f} ms, p95 {pct(later, 0.95) * ms:.1f} ms")
    rss = load_["rss"]
    print(f"load: {a.requests:,} requests, {CLIENTS} clients, random valid parameters: {len(load_['failures'])} "
          f"failures in {load_['wall']:.0f} s ({a.requests / load_['wall']:.0f} requests/s); after it: "
          f"{r['health']['streams']} streams, {r['health']['waiting']} waiting; resident memory "
          f"{rss['warm'] / 1024:.0f} MiB after warm-up, {rss['end'] / 1024:.0f} MiB at the end "
          f"({(rss['end'] / rss['warm'] - 1) * 100:+.1f}%)")  # fmt: skip
    for body, status, data in load_["failures"][:5]:
        print(f"  failed: {status} {json.dumps(body)} {data!r}")
    slow = load_["slow"] or [(None, 0.0)]  # --slow 0: none sent
    print(f"  {len(slow)} clients sending their body a byte per second meanwhile: answered "
          f"{sorted({s for s, _ in slow})} after {min(t for _, t in slow):.1f}-{max(t for _, t in slow):.1f} s "
          f"(--limit-body-seconds {a.body_seconds:g})")  # fmt: skip
    print(f"faults: {a.disconnects:,} clients disconnected mid-stream (2 streams each, 4,000 tokens asked) in "
          f"{r['disconnect_wall']:.1f} s; streams left 0 after {r['freed'] * ms:.0f} ms")  # fmt: skip
    for name, (good, each, want, reset) in r["bad"].items():
        resets = f" ({reset} connections reset instead)" if reset else ""
        print(f"  {name}: {good}/{each} answered {want} with an OpenAI error{resets}")
    print(f"the next request gives lstmgen sample's text: {next_ok}; after SIGTERM the server exited {code}")


if __name__ == "__main__":
    main()
