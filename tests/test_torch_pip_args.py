"""tools/torch_pip_args.py: which torch build `make install` asks pip for, from the machine's facts."""

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

TOOLS = Path(__file__).parent.parent / "tools"
sys.path.insert(0, str(TOOLS))
import torch_pip_args as t  # noqa: E402

V = t.TORCH_VERSION
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def probe_log(answer: bool):
    """A reachability fact to inject, remembering which URLs were asked about."""
    asked = []

    def reachable(url):
        asked.append(url)
        return answer

    return reachable, asked


def test_linux_without_a_gpu_gets_the_cpu_build_from_pytorchs_index():
    reachable, asked = probe_log(True)
    args, why = t.pip_args("Linux", has_nvidia_gpu=False, reachable=reachable)
    assert args == [f"torch=={V}+cpu", "--extra-index-url", CPU_INDEX]
    assert asked == [CPU_INDEX] and "CPU build" in why


def test_an_unreachable_cpu_index_is_left_out_but_the_cpu_pin_stays():
    # Here the +cpu wheel comes from pip's configured --find-links; elsewhere pip fails rather than
    # take PyPI's CUDA build.
    reachable, _ = probe_log(False)
    args, why = t.pip_args("Linux", has_nvidia_gpu=False, reachable=reachable)
    assert args == [f"torch=={V}+cpu"]
    assert CPU_INDEX in why and "did not answer" in why


def test_linux_with_a_gpu_gets_pypis_cuda_build_and_never_a_local_cpu_wheel():
    reachable, asked = probe_log(True)
    args, _ = t.pip_args("Linux", has_nvidia_gpu=True, reachable=reachable)
    assert args == [f"torch==={V}"] and asked == []  # `===`: 2.13.0+cpu does not match, `==` would take it


@pytest.mark.parametrize("system", ["Darwin", "Windows"])
@pytest.mark.parametrize("gpu", [False, True])
def test_macos_and_windows_get_pypis_build_which_is_the_cpu_one_there(system, gpu):
    reachable, asked = probe_log(True)
    args, why = t.pip_args(system, has_nvidia_gpu=gpu, reachable=reachable)
    assert args == [f"torch=={V}"] and asked == [] and system in why


@pytest.mark.parametrize(
    "spec, index",
    [
        ("torch==2.13.0+cu126", "https://download.pytorch.org/whl/cu126"),
        ("torch==2.13.0+rocm6.4", "https://download.pytorch.org/whl/rocm6.4"),
        ("torch==2.13.0+CPU", CPU_INDEX),
        ("torch==2.12.0", None),
    ],
)
def test_an_override_takes_the_index_its_local_tag_names(spec, index):
    reachable, asked = probe_log(True)
    args, why = t.pip_args("Linux", has_nvidia_gpu=False, torch=spec, reachable=reachable)
    assert args == ([spec, "--extra-index-url", index] if index else [spec])
    assert asked == ([index] if index else []) and "TORCH" in why


def test_an_explicit_index_is_used_as_given_and_none_means_none():
    reachable, asked = probe_log(False)
    mirror = "https://mirror.example/torch-cpu"
    args, _ = t.pip_args("Linux", has_nvidia_gpu=False, index=mirror, reachable=reachable)
    assert args == [f"torch=={V}+cpu", "--extra-index-url", mirror] and asked == []  # not probed: asked for
    args, _ = t.pip_args("Linux", has_nvidia_gpu=False, index="none", reachable=reachable)
    assert args == [f"torch=={V}+cpu"] and asked == []


@pytest.fixture
def http_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    server.RequestHandlerClass.log_message = lambda *a: None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_probe_sees_a_server_that_answers_even_with_an_error_status(http_server):
    assert t.reachable(http_server + "/", timeout=5)
    assert t.reachable(http_server + "/no/such/index/", timeout=5)  # 404: answered, pip will not hang on it


def test_probe_gives_up_at_once_on_a_closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    start = time.monotonic()
    assert not t.reachable(f"http://127.0.0.1:{port}/", timeout=5)
    assert time.monotonic() - start < 3  # well inside the timeout: a refusal is not waited for


def test_probe_waits_at_most_its_timeout_for_a_server_that_never_answers():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()  # connections complete in the backlog, but no reply ever comes
        start = time.monotonic()
        assert not t.reachable(f"http://127.0.0.1:{s.getsockname()[1]}/", timeout=0.5)
        assert time.monotonic() - start < 3  # the 0.5 s timeout and a busy machine's delays, not for ever


def fake_nvidia_smi(tmp_path, stdout: str, code: int) -> str:
    """A directory holding an `nvidia-smi` that behaves as given, for PATH."""
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text(f"#!/bin/sh\nprintf '{stdout}'\nexit {code}\n")
    smi.chmod(0o755)
    return str(smi.parent)


@pytest.mark.skipif(sys.platform == "win32", reason="a shell-script nvidia-smi")
@pytest.mark.parametrize(
    "stdout, code, expected",
    [
        ("GPU 0: NVIDIA H200 (UUID: GPU-1234)\\n", 0, True),
        ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\\n", 9, False),
        ("", 0, False),
    ],
)
def test_a_gpu_is_what_nvidia_smi_lists(tmp_path, monkeypatch, stdout, code, expected):
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path, stdout, code))
    assert t.has_nvidia_gpu() is expected


def test_no_nvidia_smi_means_no_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not t.has_nvidia_gpu()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the +cpu pick is Linux's")
def test_the_script_prints_only_pip_arguments_on_stdout(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no nvidia-smi: a machine without a GPU
    run = subprocess.run(
        [sys.executable, str(TOOLS / "torch_pip_args.py"), "--index", "none"],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert run.stdout == f"torch=={V}+cpu\n"
    assert run.stderr.startswith(f"torch: torch=={V}+cpu (the CPU build")
