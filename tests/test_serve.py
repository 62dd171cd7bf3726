"""`lstmgen serve` as clients see it: a real server process on a loopback port, driven over HTTP by httpx,
raw sockets, curl (the README's commands) and the official `openai` package."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lstmgen.serve.requests import ApiError

from .servers import Server, make_home, save_model

ROOT = Path(__file__).resolve().parent.parent
CAPS = ["--limit-body-bytes", "65536", "--limit-body-seconds", "2", "--limit-prompt-chars", "500",
        "--limit-n", "8", "--limit-max-tokens", "200000"]  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """Models tiny, endless (never ends a text by itself) and char (the README's name), shared by the module."""
    return make_home(tmp_path_factory.mktemp("serve") / "home", copies=("char",))


@pytest.fixture(scope="module")
def server(home):
    s = Server(home, *CAPS)
    yield s
    assert s.stop() == 0, "".join(s.log)


def post(server, body, **kw):
    return httpx.post(f"{server.url}/v1/completions", json=body, timeout=60, **kw)


def sse(response) -> list:
    """The events of a server-sent-events body: parsed JSON, and "[DONE]" as it is."""
    events = []
    for block in response.text.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            data = block[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def lstmgen_sample(home, *args, stdin=None) -> list[dict]:
    """`lstmgen sample ARGS --json`: one dict per sample."""
    r = subprocess.run([sys.executable, "-m", "lstmgen", "sample", *args, "--json"], input=stdin, capture_output=True,
                       text=True, env={**os.environ, "LSTMGEN_HOME": str(home)}, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def health(server) -> dict:
    return httpx.get(f"{server.url}/health", timeout=10).json()


def test_models_health_and_the_playground_page(server):
    models = httpx.get(f"{server.url}/v1/models").json()
    assert models["object"] == "list" and {m["id"] for m in models["data"]} == {"char", "endless", "tiny"}
    assert all(m["object"] == "model" and m["owned_by"] == "lstmgen" and m["created"] > 0 for m in models["data"])
    assert httpx.get(f"{server.url}/v1/models/tiny").json()["id"] == "tiny"
    assert health(server) == {"status": "ok", "models": 3, "streams": 0, "waiting": 0}
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and "lstmgen playground" in page.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)  # nothing fetched from elsewhere


def test_a_seeded_request_gives_lstmgen_samples_text_streamed_or_not(server, home):
    cli = lstmgen_sample(home, "-", "-m", "tiny", "--seed", "7", "-n", "2", "--max-tokens", "40", "--top-k", "20",
                         "--repetition-penalty", "1.2", "--stop", "?", stdin="Why did\nHey\n")  # fmt: skip
    finish = {"eor": "stop", "stop": "stop", "max_tokens": "length", "loop": "loop"}
    body = {"model": "tiny", "prompt": ["Why did", "Hey"], "n": 2, "seed": 7, "max_tokens": 40, "top_k": 20,
            "repetition_penalty": 1.2, "stop": "?"}  # fmt: skip
    r = post(server, body)
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["object"] == "text_completion" and done["model"] == "tiny" and done["id"].startswith("cmpl-")
    assert [c["text"] for c in done["choices"]] == [s["completion"] for s in cli]
    assert [c["finish_reason"] for c in done["choices"]] == [finish[s["stop_reason"]] for s in cli]
    assert [c["index"] for c in done["choices"]] == [0, 1, 2, 3]
    usage = done["usage"]
    assert usage["completion_tokens"] == sum(s["tokens"] for s in cli) and usage["prompt_tokens"] == len("Why didHey")
    assert done["system_fingerprint"] == "tiny@step12"

    r = post(server, {**body, "stream": True, "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse(r)
    assert events[-1] == "[DONE]" and events[-2]["choices"] == [] and events[-2]["usage"] == usage
    texts, reasons = ["", "", "", ""], [None] * 4
    for e in events[:-2]:
        (choice,) = e["choices"]
        texts[choice["index"]] += choice["text"]
        reasons[choice["index"]] = choice["finish_reason"] or reasons[choice["index"]]
    assert texts == [s["completion"] for s in cli] and reasons == [c["finish_reason"] for c in done["choices"]]
    echoed = post(server, {**body, "echo": True}).json()
    assert [c["text"] for c in echoed["choices"]] == [s["text"] for s in cli]


def test_the_openai_client_streaming_and_not(server):
    import openai

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    assert sorted(m.id for m in client.models.list()) == ["char", "endless", "tiny"]
    done = client.completions.create(model="tiny", prompt="Why", max_tokens=30, seed=3, temperature=1.2,
                                     extra_body={"top_k": 30})  # fmt: skip
    same = post(server, {"model": "tiny", "prompt": "Why", "max_tokens": 30, "seed": 3, "temperature": 1.2,
                         "top_k": 30}).json()  # fmt: skip
    assert done.choices[0].text == same["choices"][0]["text"] and done.usage.completion_tokens > 0
    chunks = list(client.completions.create(model="endless", prompt="Why", max_tokens=300, seed=3, stream=True))
    assert len(chunks) >= 2 and chunks[-1].choices[0].finish_reason == "length"
    whole = client.completions.create(model="endless", prompt="Why", max_tokens=300, seed=3)
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text and whole.usage.completion_tokens == 300
    with pytest.raises(openai.NotFoundError, match="not served"):
        client.completions.create(model="nope", prompt="Why")
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.completions.create(model="tiny", prompt="Why", temperature=-1)


def raw(server, request: bytes, read_all: bool = True) -> bytes:
    """Send bytes, return what came back until the server closed (or 5 s passed)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(request)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
                if not read_all:
                    break
        except TimeoutError:
            pass
        return out


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b"[" * 100_000, 413, "cap"),
        (b"[" * 60_000, 400, "not valid JSON"),
        (json.dumps({"prompt": "Why"}).encode(), 400, "model is required"),
        (json.dumps({"model": "tiny", "temperature": "hot"}).encode(), 400, "temperature must be a finite number"),
        (json.dumps({"model": "tiny", "max_tokens": 10**9}).encode(), 400, "--limit-max-tokens"),
        (json.dumps({"model": "tiny", "max_tokens": 0}).encode(), 400, "max_tokens must be at least 1"),
        (b'{"model": "tiny", "max_tokens": 1e308}', 400, "max_tokens is a 309-digit number, over the limit of"),
        (b'{"model": "tiny", "seed": 1' + b"0" * 4000 + b"}", 400, "(got a 4001-digit number)"),
        (b'{"model": "tiny", "prompt": "Why \\ud800"}', 400, "not half of a surrogate pair"),
        (b'{"model": "tiny", "stop": "\\udfff"}', 400, "not half of a surrogate pair"),
        (json.dumps({"model": "tiny", "n": 3, "prompt": ["a", "b", "c"]}).encode(), 400, "--limit-n"),
        (json.dumps({"model": "tiny", "prompt": "x" * 501}).encode(), 400, "--limit-prompt-chars"),
        (json.dumps({"model": "tiny", "prompt": [1, 2, 3]}).encode(), 400, "not token ids"),
        (json.dumps({"model": "tiny", "stream": "yes"}).encode(), 400, "stream must be true or false"),
        (json.dumps({"model": "tiny", "top_p": 0}).encode(), 400, "top_p must be in (0, 1]"),
        (json.dumps({"model": "tiny", "stop": ["", "?"]}).encode(), 400, "stop must be"),
        (json.dumps({"model": "tiny", "seed": -1}).encode(), 400, "seed must be at least 0"),
        (json.dumps({"model": "tiny", "seed": 2**63}).encode(), 400, "seed must be between 0 and 2^63 - 1"),
        (json.dumps({"model": "tiny", "prompt": "Why ☃"}).encode(), 400, "☃"),
        (json.dumps({"model": "nope"}).encode(), 404, "not served here"),
        (json.dumps({"model": "../../etc/passwd"}).encode(), 400, "invalid model name"),
        (b'{"model": "tiny", "temperature": NaN}', 400, "finite"),
        (json.dumps({"model": "tiny", "repetition_penalty": 1e7}).encode(), 400, "between 1e-6 and 1e6"),
    ],
)
def test_bad_requests_get_openais_error_shape_and_the_server_serves_the_next(server, body, status, says):
    r = httpx.post(f"{server.url}/v1/completions", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert says in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert error["type"] == ("invalid_request_error" if status < 500 else "server_error")
    ok = post(server, {"model": "tiny", "prompt": "Why", "max_tokens": 5, "seed": 1})
    assert ok.status_code == 200 and len(ok.json()["choices"]) == 1


def test_other_refusals_protocol_level(server):
    url = f"{server.url}/v1/completions"
    r = httpx.post(url, content=b'{"model": "tiny"}')  # no Content-Type
    assert r.status_code == 415 and "application/json" in r.json()["error"]["message"]
    r = httpx.post(url, content=b"x" * 70_000, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: the cap holds as the body arrives
        for _ in range(100):
            yield b" " * 1000

    r = httpx.post(url, content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    r = httpx.post(f"{server.url}/v1/chat/completions", json={})
    assert r.status_code == 404 and "/v1/completions" in r.json()["error"]["message"]
    r = httpx.delete(f"{server.url}/v1/models")
    assert r.status_code == 405 and "error" in r.json()
    r = httpx.get(f"{server.url}/v1/models", headers={"Host": "evil.example"})
    assert r.status_code == 400 and "loopback" in r.json()["error"]["message"]
    ignored = {"user": "u1", "logit_bias": {"5": 2}, "logprobs": 3, "presence_penalty": 0.5, "suffix": "!",
               "frequency_penalty": 0, "best_of": 1, "stream_options": None, "service_tier": "auto"}  # fmt: skip
    plain = post(server, {"model": "tiny", "prompt": "Why", "max_tokens": 20, "seed": 2}).json()
    r = post(server, {"model": "tiny", "prompt": "Why", "max_tokens": 20, "seed": 2, **ignored})
    assert r.status_code == 200 and r.json()["choices"] == plain["choices"]


def test_a_client_that_disconnects_mid_stream_frees_its_streams(server):
    body = json.dumps({"model": "endless", "prompt": "Why", "max_tokens": 200_000, "n": 4, "stream": True,
                       "temperature": 1.5}).encode()  # fmt: skip
    request = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s") % (len(body), body)  # fmt: skip
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(request)
        received = b""
        while b"data: " not in received:
            chunk = s.recv(4096)
            assert chunk, received  # the server answered, and closed, without streaming
            received += chunk
        assert health(server)["streams"] == 4  # 200,000 tokens each: minutes of work
    start = time.monotonic()
    while health(server)["streams"] and time.monotonic() - start < 10:
        time.sleep(0.02)
    assert health(server)["streams"] == 0 and time.monotonic() - start < 5  # not minutes


def test_a_body_sent_a_byte_at_a_time_times_out_while_others_are_served(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        slow.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 40\r\n\r\n{")  # fmt: skip
        ok = post(server, {"model": "tiny", "prompt": "Hey", "max_tokens": 10})
        assert ok.status_code == 200
        slow.setblocking(False)
        with pytest.raises(BlockingIOError):  # answered while the slow body is still arriving
            slow.recv(1)
        slow.setblocking(True)
        answer = b""
        for _ in range(30):  # up to 15 s, on a busy machine; fewer than the 39 bytes that would end the body
            slow.sendall(b" ")
            time.sleep(0.5)
            slow.settimeout(0.01)
            try:
                answer += slow.recv(65536)
            except (TimeoutError, BlockingIOError):
                pass
            if answer:
                break
    assert answer.startswith(b"HTTP/1.1 408") and b"limit-body-seconds" in answer


def test_new_models_and_new_best_checkpoints_are_picked_up_without_a_restart(server, home, monkeypatch):
    monkeypatch.setenv("LSTMGEN_HOME", str(home))
    save_model("tiny", "later")  # a model trained after the server started
    assert "later" in [m["id"] for m in httpx.get(f"{server.url}/v1/models").json()["data"]]
    body = {"model": "later", "prompt": "Why", "max_tokens": 30, "seed": 5}
    before = post(server, body).json()
    assert before["system_fingerprint"] == "later@step12"
    # Its training run saves a new best, one that never ends a text: what it serves now must run to max_tokens.
    assert before["choices"][0]["finish_reason"] == "stop"
    save_model("later", "later", no_eor=True, steps=10)
    assert server.wait_for("model 'later': now serving step 22")
    after = post(server, body).json()
    assert after["system_fingerprint"] == "later@step22" and after["choices"][0]["finish_reason"] == "length"
    assert after["choices"][0]["text"] == lstmgen_sample(home, "Why", "-m", "later", "--max-tokens", "30",
                                                         "--seed", "5")[0]["completion"]  # fmt: skip
    shutil.rmtree(home / "models" / "later")  # removed from the registry: no longer listed, nor held
    assert "later" not in [m["id"] for m in httpx.get(f"{server.url}/v1/models").json()["data"]]
    assert server.wait_for("model 'later': its checkpoint is gone from the registry; no longer served")


def test_a_model_removed_while_serving_gets_404_and_leaves_the_engine(server, home, monkeypatch):
    monkeypatch.setenv("LSTMGEN_HOME", str(home))
    save_model("endless", "doomed")
    save_model("tiny", "quiet")
    try:
        assert post(server, {"model": "quiet", "prompt": "Why", "max_tokens": 3}).status_code == 200
        loaded = health(server)["models"]
        body = {"model": "doomed", "prompt": "Why", "max_tokens": 3000, "stream": True, "temperature": 1.5}
        with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as r:
            lines = r.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert health(server)["models"] == loaded + 1
            shutil.rmtree(home / "models" / "doomed")  # what `lstmgen rm doomed` does
            gone = post(server, {"model": "doomed", "prompt": "Why", "max_tokens": 3})
            assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found", gone.text
            assert health(server)["models"] == loaded
            rest = [line for line in [first, *lines] if line]
        events = [json.loads(line[6:]) for line in rest if line.startswith("data: {")]
        assert rest[-1] == "data: [DONE]" and events[-1]["choices"][0]["finish_reason"] == "length"  # it finished
        # No request for it: the engine's look at its files (every RELOAD_EVERY s) has the server drop it.
        shutil.rmtree(home / "models" / "quiet")
        assert server.wait_for("model 'quiet': its checkpoint is gone from the registry; no longer served")
        assert health(server) == {"status": "ok", "models": loaded - 1, "streams": 0, "waiting": 0}
    finally:
        for name in ("doomed", "quiet"):
            shutil.rmtree(home / "models" / name, ignore_errors=True)


def test_a_model_named_at_start_is_not_served_once_its_files_are_gone(home, tmp_path, monkeypatch):
    own = tmp_path / "own"
    shutil.copytree(home, own)
    monkeypatch.setenv("LSTMGEN_HOME", str(own))
    s = Server(own, "-m", "tiny", "-m", "char")
    try:
        body = {"model": "tiny", "prompt": "Why", "max_tokens": 3}
        assert post(s, body).status_code == 200
        shutil.rmtree(own / "models" / "tiny")
        r = post(s, body)
        assert r.status_code == 404 and "not served" in r.json()["error"]["message"], r.text
        assert [m["id"] for m in httpx.get(f"{s.url}/v1/models").json()["data"]] == ["char"]
        assert httpx.get(f"{s.url}/v1/models/tiny").status_code == 404 and health(s)["models"] == 1
        save_model("char", "tiny")  # trained again under its name
        assert post(s, body).status_code == 200 and health(s)["models"] == 2
    finally:
        assert s.stop() == 0, "".join(s.log)


def test_error_messages_sent_to_clients_hide_the_servers_paths(server, home, monkeypatch, tmp_path):
    monkeypatch.setenv("LSTMGEN_HOME", str(home))
    save_model("tiny", "damaged")
    graph = home / "models" / "damaged" / "best.onnx"
    try:
        data = bytearray(graph.read_bytes())
        data[len(data) // 2] ^= 0xFF
        graph.write_bytes(bytes(data))
        r = post(server, {"model": "damaged", "prompt": "Why"})
        assert r.status_code == 503, r.text
        message = r.json()["error"]["message"]
        assert "models/damaged/best.onnx is damaged" in message and str(home) not in message, message
    finally:
        shutil.rmtree(home / "models" / "damaged")
    # Every error's JSON is made by ApiError.body: a registry reached through a link is hidden by both names.
    link = tmp_path / "link"
    link.symlink_to(home)
    monkeypatch.setenv("LSTMGEN_HOME", str(link))
    said = ApiError(503, f"{home}/models/x/best.pt, {link}/models/x, {link}2/y; in {link}").body()["error"]
    assert said["message"] == f"models/x/best.pt, models/x, {link}2/y; in the server's registry"


@pytest.mark.parametrize("path", ["/v1/models/../../etc/passwd", "/v1/models/%2e%2e%2ftiny", "/v1/models/tiny/x"])
def test_a_model_path_with_a_slash_is_a_model_not_served(server, path):
    answer = raw(server, b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path.encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404"), answer
    error = json.loads(body)["error"]
    assert error["code"] == "model_not_found" and "not served" in error["message"]
    assert set(error) == {"message", "type", "param", "code"}
    assert httpx.delete(f"{server.url}/v1/models/tiny").status_code == 405  # the endpoint, another method


@pytest.fixture(scope="module")
def keyed(home):
    """A server with an API key, serving tiny (named twice) and endless."""
    s = Server(home, "-m", "tiny", "-m", "endless", "-m", "tiny", env={"LSTMGEN_API_KEY": "s3cret"})
    yield s
    assert s.stop() == 0, "".join(s.log)


def test_a_model_named_twice_is_served_once(keyed):
    assert keyed.wait_for("serving 2 model(s): tiny, endless at ")
    models = httpx.get(f"{keyed.url}/v1/models", headers={"Authorization": "Bearer s3cret"}).json()
    assert [m["id"] for m in models["data"]] == ["tiny", "endless"]


def test_the_auth_schemes_case_does_not_matter_the_keys_does(keyed):
    models = f"{keyed.url}/v1/models"
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert httpx.get(models, headers={"Authorization": f"{scheme} s3cret"}).status_code == 200, scheme
    for header in ("Bearer S3CRET", "Basic s3cret", "Bearers3cret", "s3cret"):
        assert httpx.get(models, headers={"Authorization": header}).status_code == 401, header
    r = post(keyed, {"model": "tiny", "prompt": "Why", "max_tokens": 3}, headers={"Authorization": "bearer s3cret"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("method", "path", "then"),
    [("GET", "/v1/nope", 404), ("POST", "/v1/chat/completions", 404), ("GET", "/v1", 404),
     ("GET", "/v1/models/nope", 404), ("DELETE", "/v1/models", 405), ("GET", "/v1/completions", 405),
     ("OPTIONS", "/v1/models", 405), ("PROPFIND", "/v1/models", 405)],
)  # fmt: skip
def test_every_v1_request_without_the_key_gets_401_before_anything_else(keyed, method, path, then):
    r = httpx.request(method, f"{keyed.url}{path}", json={})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", r.text
    r = httpx.request(method, f"{keyed.url}{path}", json={}, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == then and "error" in r.json(), r.text


@pytest.mark.parametrize(
    ("args", "key", "says"),
    [([], "", "is empty"), (["--api-key", ""], None, "is empty"), (["--api-key", " "], None, "is empty"),
     (["--api-key", "a\nb"], None, "holds the control character '\\n'"), ([], "a\x7fb", "control character"),
     ([], "s3cret ", "starts or ends with whitespace")],
)  # fmt: skip
def test_an_api_key_no_client_can_send_is_refused_from_the_flag_and_the_variable(monkeypatch, args, key, says):
    """An empty LSTMGEN_API_KEY (an unset shell variable in a unit file) must not mean "no key"."""
    import lstmgen.serve
    from lstmgen.cli import app

    from .cli.runner import runner

    started = []
    monkeypatch.setattr(lstmgen.serve, "serve", lambda options, **kw: started.append(options))
    r = runner.invoke(app, ["serve", *args], env={"LSTMGEN_API_KEY": key})
    assert r.exit_code == 2 and started == [] and r.stdout == "", (r.exit_code, r.stderr)
    assert r.stderr.startswith("error: --api-key (or LSTMGEN_API_KEY)") and says in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def readme_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("## Serving", 1)[1].split("\n## ", 1)[0]


def test_the_readmes_curl_commands_and_openai_snippet_work_as_written(server):
    section = readme_section()
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    commands = [c for b in blocks for c in b.replace("\\\n", " ").splitlines() if c.startswith("curl ")]
    assert len(commands) == 3
    for command in commands:
        r = subprocess.run(["bash", "-c", command.replace("localhost:8000", f"localhost:{server.port}")],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        assert r.returncode == 0, r.stderr
        if '"stream": true' in command:
            assert r.stdout.rstrip().endswith("data: [DONE]") and '"finish_reason": "stop"' in r.stdout
        else:
            assert "error" not in json.loads(r.stdout)
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    r = subprocess.run([sys.executable, "-c", code.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0 and r.stderr == "", r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0].rsplit(" ", 1)[1] in ("stop", "length", "loop") and lines[1]


def test_api_key_then_sigterm_lets_running_requests_finish_and_exits_0(home):
    s = Server(home, "--model", "endless", "--drain-seconds", "60", "--limit-max-tokens", "10000",
               env={"LSTMGEN_API_KEY": "s3cret"})
    try:
        models = f"{s.url}/v1/models"
        assert httpx.get(models).status_code == 401
        wrong = httpx.get(models, headers={"Authorization": "Bearer s3cre"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        key = {"Authorization": "Bearer s3cret"}
        assert [m["id"] for m in httpx.get(models, headers=key).json()["data"]] == ["endless"]
        assert httpx.get(f"{s.url}/health").status_code == 200 and httpx.get(f"{s.url}/").status_code == 200
        body = {"model": "endless", "prompt": "Why", "max_tokens": 10_000, "stream": True, "temperature": 1.5}
        with httpx.stream("POST", f"{s.url}/v1/completions", json=body, headers=key, timeout=60) as r:
            lines = r.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            # A request whose body is still arriving when the signal comes: it is in flight too.
            late = socket.create_connection(("127.0.0.1", s.port), timeout=30)
            short = json.dumps({"model": "endless", "prompt": "Hey", "max_tokens": 5}).encode()
            head = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Authorization: Bearer s3cret\r\nContent-Length: %d\r\n\r\n") % len(short)  # fmt: skip
            late.sendall(head + short[:10])
            # The listening socket's backlog is served in order: once a later connection is answered, `late`
            # has been accepted, and its head read, before the signal stops the server accepting.
            assert httpx.get(f"{s.url}/health").status_code == 200
            time.sleep(0.3)
            s.proc.send_signal(signal.SIGTERM)
            for _ in range(50):  # no new connections once the signal is handled (within 0.1 s when idle)
                try:
                    httpx.get(f"{s.url}/health")
                except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):  # refused, or closed
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("still accepting connections 5 s after SIGTERM")
            late.sendall(short[10:])
            answer = b""
            while chunk := late.recv(65536):  # the server closes it once answered: it is draining
                answer += chunk
            late.close()
            rest = [line for line in [first, *lines] if line]
        assert answer.startswith(b"HTTP/1.1 200") and b'"finish_reason":"length"' in answer.replace(b" ", b"")
        events = [json.loads(line[6:]) for line in rest if line.startswith("data: {")]
        assert rest[-1] == "data: [DONE]" and events[-1]["choices"][0]["finish_reason"] == "length"
        assert len("".join(e["choices"][0]["text"] for e in events)) == 10_000  # every character, one per token
        assert s.proc.wait(30) == 0
    finally:
        s.stop()


def test_sighup_stops_the_server_as_sigterm_does(home):
    """A closed terminal's SIGHUP: stop accepting, drain, exit 0, the engine process gone with it."""
    s = Server(home, "--model", "tiny")
    try:
        assert httpx.get(f"{s.url}/health", timeout=10).status_code == 200
        s.proc.send_signal(signal.SIGHUP)
        assert s.proc.wait(30) == 0
    finally:
        s.stop()


def test_sigterm_cuts_what_is_still_running_after_the_drain_timeout_and_exits_0(home):
    s = Server(home, "--model", "endless", "--drain-seconds", "1", "--limit-max-tokens", "200000")
    try:
        body = {"model": "endless", "prompt": "Why", "max_tokens": 200_000, "stream": True}
        with httpx.stream("POST", f"{s.url}/v1/completions", json=body, timeout=60) as r:
            lines = r.iter_lines()
            next(line for line in lines if line.startswith("data: "))
            start = time.monotonic()
            s.proc.send_signal(signal.SIGTERM)
            with pytest.raises(httpx.RemoteProtocolError):  # cut before its end
                for _ in lines:
                    pass
        assert s.proc.wait(30) == 0 and time.monotonic() - start < 10
    finally:
        s.stop()


@pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
                    reason="finds the engine process through /proc's children list")  # fmt: skip
def test_a_dead_engine_fails_running_and_later_requests_with_503_instead_of_hanging(home):
    s = Server(home)
    try:
        assert post(s, {"model": "tiny", "prompt": "Why", "max_tokens": 3}).status_code == 200
        body = {"model": "endless", "prompt": "Why", "max_tokens": 4000, "stream": True}  # the default cap
        with httpx.stream("POST", f"{s.url}/v1/completions", json=body, timeout=30) as running:
            lines = running.iter_lines()
            next(line for line in lines if line.startswith("data: "))
            children = Path(f"/proc/{s.proc.pid}/task/{s.proc.pid}/children").read_text().split()
            assert len(children) == 1  # the engine: the server's one child process
            os.kill(int(children[0]), signal.SIGKILL)
            rest = list(lines)  # it ends, saying what happened: no hang
        assert any("decoding engine process ended" in line for line in rest), rest
        assert s.wait_for("the decoding engine process ended (signal 9)")  # the server's log says how
        for name in ("tiny", "char"):  # loaded before, and never loaded: both answer at once
            r = post(s, {"model": name, "prompt": "Why", "max_tokens": 3})
            assert r.status_code == 503 and "restart the server" in r.json()["error"]["message"], r.text
        assert httpx.get(f"{s.url}/v1/models", timeout=10).status_code == 200  # what the registry has
        r = httpx.get(f"{s.url}/health", timeout=10)  # a supervisor's probe learns it must restart the server
        assert r.status_code == 503 and r.json()["status"] == "unavailable" and "ended" in r.json()["error"], r.text
    finally:
        s.stop()
