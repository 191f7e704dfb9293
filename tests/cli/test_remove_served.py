"""``rmbg remove`` against real Triton servers: one started for the run when nothing answers (and stopped
however the run ends), URL inputs under the fetch rules, stdin to stdout, a model that is not built.

The tiny IS-Net (synthetic weights, 256 px) keeps each server start to seconds; its masks are meaningless,
so these tests check files, sizes, messages and processes, not cut-outs.
"""

from __future__ import annotations

import io
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from rmbg_cli import endpoint
from rmbg_cli.main import main
from rmbg_server.launcher import ServerConfig, TritonServer, free_ports

pytestmark = [pytest.mark.triton, pytest.mark.slow]
# `rmbg remove` with its default address moved to free ports: the run must find nothing there. SIGUSR1
# prints every thread's stack, for a run that does not stop.
DRIVER = ("import faulthandler, signal, sys; faulthandler.register(signal.SIGUSR1, all_threads=True); "
          "from rmbg_cli import endpoint; "
          "endpoint.DEFAULT_PORTS.update(grpc=int(sys.argv[1]), http=int(sys.argv[2])); "
          "from rmbg_cli.main import main; sys.exit(main(sys.argv[3:]))")


def processes_under(path: Path) -> list[str]:
    """Live processes whose command line names ``path`` (tritonserver and its stubs), as 'pid cmdline'."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if proc.name.isdigit() and str(path) in cmdline and state != "Z" and "rmbg_cli" not in cmdline:
            found.append(f"{proc.name} {cmdline[:200]}")
    return found


@pytest.fixture
def own_repository(tiny_repository, tmp_path) -> Path:
    """A copy of the tiny repository that only this test's server uses, so its processes can be found by path."""
    return Path(shutil.copytree(tiny_repository, tmp_path / "repo", symlinks=True)).resolve()


@pytest.fixture
def nothing_at_the_default(monkeypatch) -> tuple[int, int]:
    ports = tuple(free_ports(2))
    monkeypatch.setitem(endpoint.DEFAULT_PORTS, "grpc", ports[0])
    monkeypatch.setitem(endpoint.DEFAULT_PORTS, "http", ports[1])
    return ports


@pytest.fixture(scope="module")
def tiny_server(tiny_repository, tmp_path_factory):
    with TritonServer(ServerConfig.on_free_ports(tiny_repository),
                      log_file=tmp_path_factory.mktemp("logs") / "tiny-triton.log") as server:
        yield server


@pytest.fixture
def photos(tmp_path, small_jpeg) -> Path:
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    (tmp_path / "photos" / "a.jpg").write_bytes(small_jpeg)
    (tmp_path / "photos" / "sub" / "b.jpg").write_bytes(small_jpeg)
    return tmp_path / "photos"


def size_of(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_with_no_server_one_is_started_for_the_run_and_stopped(photos, own_repository, nothing_at_the_default,
                                                               capsys, small_jpeg, protocol):
    out = photos.parent / "out"
    logs_before = set(Path(tempfile.gettempdir()).glob("rmbg-remove-triton-*.log"))
    code = main(["remove", str(photos), "-o", str(out), "--model-repository", str(own_repository),
                 "--protocol", protocol])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    default = endpoint.default_url(protocol)
    assert f"rmbg remove: nothing answers at {default}; starting a server for this run from {own_repository}/" \
           in captured.err and "server ready in" in captured.err
    assert f"2 of 2 written to {out}/" in captured.out
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["a.png", "sub/b.png"]
    assert size_of((out / "sub" / "b.png").read_bytes()) == size_of(small_jpeg)
    assert processes_under(own_repository) == []
    assert set(Path(tempfile.gettempdir()).glob("rmbg-remove-triton-*.log")) <= logs_before  # removed: no trouble


def test_an_error_during_the_run_still_stops_the_server(photos, own_repository, nothing_at_the_default, capsys):
    blocker = photos.parent / "blocker"
    blocker.write_text("a file where the output directory should go")
    code = main(["remove", str(photos), "-o", str(blocker / "out"), "--model-repository", str(own_repository)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("FAILED") == 2 and "cannot write" in err, err
    assert processes_under(own_repository) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_the_run_and_its_server(own_repository, tmp_path, sig):
    """The run waits on stdin (a pipeline's slow producer) with its server up; the signal must take both down."""
    cmd = [sys.executable, "-c", DRIVER, *map(str, free_ports(2)), "remove", "-", "-o",
           str(tmp_path / "out.png"), "--model-repository", str(own_repository)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if not line or "server ready" in line:
                break
        assert "server ready" in lines[-1], "".join(lines)
        assert processes_under(own_repository), "no server was started"
        rest: list[str] = []
        reader = threading.Thread(target=lambda: rest.append(proc.stderr.read()), daemon=True)
        reader.start()  # its last words never wait on a full pipe
        proc.send_signal(sig)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            proc.kill()
            reader.join(10)
            pytest.fail(f"the run did not stop within 60 s of {sig.name}; its stderr, stacks last:\n"
                        + "".join(lines + rest))
        reader.join(10)
        err = "".join(lines + rest)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdin.close()
    assert code == 130 and "rmbg remove: interrupted" in err, err
    assert "Traceback" not in err
    assert processes_under(own_repository) == []
    assert not (tmp_path / "out.png").exists()


def test_a_server_at_the_default_address_is_used(photos, tiny_server, monkeypatch, capsys):
    monkeypatch.setitem(endpoint.DEFAULT_PORTS, "grpc", tiny_server.cfg.grpc_port)
    out = photos.parent / "out"
    assert main(["remove", str(photos / "a.jpg"), "-o", str(out / "a.webp")]) == 0
    captured = capsys.readouterr()
    assert "starting a server" not in captured.err and f"1 of 1 written to {out / 'a.webp'}" in captured.out
    assert Image.open(out / "a.webp").format == "WEBP"  # the format follows -o's extension


def test_a_model_the_server_lacks_is_named_with_its_build_command(photos, tiny_server, capsys):
    code = main(["remove", str(photos), "-o", str(photos.parent / "out"), "--url", tiny_server.grpc_url,
                 "--model", "birefnet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"rmbg remove: the birefnet model is not built: the server at {tiny_server.grpc_url} has "
                          "rmbg_isnet. Build it with: rmbg build-repo --model birefnet --weights hf:briaai/RMBG-2.0")
    assert "then restart that server; or use --model isnet" in err and "not reachable" not in err


def test_url_inputs_follow_the_client_fetch_rules(tiny_server, http_server, small_jpeg, tmp_path, capsys):
    http_server.handler.files["/photos/x.jpg"] = small_jpeg
    url = f"{http_server.base}/photos/x.jpg?signature=abc"
    base = ["remove", url, "--url", tiny_server.grpc_url]
    assert main([*base, "-o", str(tmp_path / "refused")]) == 1
    err = capsys.readouterr().err
    assert f"FAILED {url}: image: {http_server.base}/photos/x.jpg resolves to 127.0.0.1, a loopback address" in err
    assert "--allow-fetch-from" in err and not (tmp_path / "refused").exists()
    assert main([*base, "-o", str(tmp_path / "y.png"), "--allow-fetch-from", "127.0.0.1/32"]) == 0
    assert size_of((tmp_path / "y.png").read_bytes()) == size_of(small_jpeg)
    assert main([*base, "-o", str(tmp_path / "dir"), "--allow-fetch-from", "127.0.0.0/8"]) == 0
    assert (tmp_path / "dir" / "x.png").is_file()  # named after the URL's path, not its query


def test_stdin_to_stdout_in_a_pipeline(tiny_server, small_jpeg):
    proc = subprocess.run([sys.executable, "-m", "rmbg_cli.main", "remove", "-", "-o", "-", "--url",
                           tiny_server.grpc_url, "--format", "webp"], input=small_jpeg, capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = Image.open(io.BytesIO(proc.stdout))
    assert out.format == "WEBP" and out.size == size_of(small_jpeg)
    assert b"1 of 1 written to standard output" in proc.stderr
