"""``rmbg remove`` without a server: flags, inputs and outputs, and the errors that come before any request."""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import pytest

from rmbg_cli import endpoint
from rmbg_cli.files import collect_inputs, output_paths, url_name
from rmbg_cli.main import build_parser, main
from rmbg_cli.remove import options_from_args
from rmbg_server.launcher import free_port


def test_every_option_is_reachable_from_flags():
    args = build_parser().parse_args([
        "remove", "x.jpg", "-o", "out", "--format", "jpg", "--quality", "80", "--mask-only",
        "--bg-color", "1,2,3,4", "--alpha-matting", "--fg-threshold", "200", "--bg-threshold", "20",
        "--erode-size", "5", "--post-process-mask", "--preserve-alpha", "--high-quality"])
    assert options_from_args(args) == {
        "outputFormat": "JPG", "outputQuality": 80, "returnOnlyMask": True, "rgba": [1, 2, 3, 4],
        "alphaMatting": True, "alphaMattingForegroundThreshold": 200, "alphaMattingBackgroundThreshold": 20,
        "alphaMattingErodeSize": 5, "postProcessMask": True, "preserveAlpha": True, "highQuality": True}
    assert "highQuality" not in options_from_args(build_parser().parse_args(["remove", "x.jpg", "-o", "o"]))


def test_every_shaping_option_is_reachable_from_flags():
    args = build_parser().parse_args([
        "remove", "x.jpg", "-o", "out", "--format", "auto", "--crop", "--crop-margin", "10%", "--output-size",
        "800x600", "--scale", "0.8", "--position", "25%,100", "--shadow", "--shadow-opacity", "0.3",
        "--shadow-blur", "15", "--shadow-offset=-4,12", "--refine-foreground"])
    assert options_from_args(args) == {
        "outputFormat": "AUTO", "crop": True, "cropMargin": "10%", "outputSize": [800, 600], "scale": 0.8,
        "position": ["25%", "100%"], "shadow": True, "shadowOpacity": 0.3, "shadowBlur": 15.0,
        "shadowOffset": [-4, 12], "refineForeground": True}
    args = build_parser().parse_args(["remove", "x.jpg", "-o", "o", "--crop-margin", "30", "--position", "original"])
    assert options_from_args(args)["cropMargin"] == 30 and options_from_args(args)["position"] == "original"


@pytest.mark.parametrize(("flag", "value"), [("--output-size", "800"), ("--shadow-offset", "1"),
                                             ("--position", "top")])
def test_bad_shaping_flags_are_usage_errors(flag, value):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["remove", "x.jpg", "-o", "o", flag, value])


def test_defaults_send_only_the_format():
    args = build_parser().parse_args(["remove", "x.jpg", "-o", "out"])
    assert options_from_args(args) == {"outputFormat": "PNG"}


def test_bad_bg_color_is_a_usage_error():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["remove", "x.jpg", "-o", "o", "--bg-color", "1,2,3"])


def test_directory_inputs_and_distinct_outputs(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/a.jpg", "d/a.png", "d/sub/b.webp", "d/notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = collect_inputs([str(tmp_path / "d")])
    assert [str(rel) for _, rel in found] == ["a.jpg", "a.png", "sub/b.webp"]
    dests = output_paths(found, Path("out"), "png")
    assert sorted(str(d) for d in dests.values()) == ["out/a.png", "out/a_png.png", "out/sub/b.png"]
    with pytest.raises(FileNotFoundError):
        collect_inputs([str(tmp_path / "missing")])


@pytest.fixture
def listener():
    """A TCP port that records whether anything connected: proof that no request was sent."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def connections(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


@pytest.fixture
def photos(tmp_path, small_jpeg) -> Path:
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    (tmp_path / "photos" / "a.jpg").write_bytes(small_jpeg)
    (tmp_path / "photos" / "sub" / "b.jpg").write_bytes(small_jpeg)
    return tmp_path / "photos"


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--quality", "100", "must be in 20..99, got 100"),
    ("--quality", "abc", "must be an integer in 20..99, got 'abc'"),
    ("--crop-margin", "abc", "must be pixels 0..10000"),
    ("--crop-margin", "101%", "must be in 0..100"),
    ("--fg-threshold", "0", "must be in 1..255, got 0"),
    ("--bg-threshold", "256", "must be in 1..255, got 256"),
    ("--erode-size", "1.5", "must be an integer in 1..255"),
    ("--bg-color", "1,2,3,300", "a must be in 0..255, got 300"),
    ("--bg-color", "1,2,3", "expected R,G,B,A"),
    ("--output-size", "0x10", "width must be in 1..65500, got 0"),
    ("--output-size", "800", "expected WIDTHxHEIGHT"),
    ("--scale", "2", "must be in 0..1 (above 0), got 2"),
    ("--position", "top", "expected center, original or X%,Y%"),
    ("--position", "120%,0", "must be in 0..100"),
    ("--shadow-opacity", "1.5", "must be in 0..1, got 1.5"),
    ("--shadow-blur", "-1", "must be in 0..500, got -1"),
    ("--shadow-offset", "6000,0", "dx must be in -5000..5000, got 6000"),
    ("--concurrency", "0", "must be >= 1, got 0"),
    ("--timeout", "0", "must be a number above 0"),
    ("--allow-fetch-from", "10.0.0.0/33", "expected a CIDR"),
    ("--bg-image", "no-such.png", "no such file"),
    ("--url", "http://127.0.0.1:8080", "expected Triton's HOST:PORT"),
    ("--url", "localhost", "expected HOST:PORT"),
])
def test_every_flag_value_is_checked_before_any_request(photos, listener, capsys, flag, value, message):
    url = ["--url", f"127.0.0.1:{listener.getsockname()[1]}"] if flag != "--url" else []
    with pytest.raises(SystemExit) as exit_:
        main(["remove", str(photos), "-o", str(photos.parent / "out"), *url, f"{flag}={value}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"rmbg remove: error: argument {flag}: ") and message in last, err
    assert err.count("error") == 1 and "FAILED" not in err
    assert connections(listener) == 0 and not (photos.parent / "out").exists()


def test_a_valid_value_passes_as_the_server_takes_it():
    args = build_parser().parse_args(["remove", "x.jpg", "-o", "o", "--quality", "20", "--crop-margin", "30px",
                                      "--shadow-blur", "0", "--concurrency", "1", "--url", "[::1]:8001",
                                      "--allow-fetch-from", "10.0.0.0/8", "--allow-fetch-from", "fd00::/8"])
    assert options_from_args(args) == {"outputFormat": "PNG", "outputQuality": 20, "cropMargin": "30px",
                                       "shadowBlur": 0.0}
    assert args.url == "[::1]:8001" and args.allow_fetch_from == ["10.0.0.0/8", "fd00::/8"]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("command", ["remove", "serve", "build-repo", "export", "gateway", "up"])
def test_every_flag_has_help_that_shows_its_default(command):
    parser = _subcommands()[command]
    flags = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
    assert len(flags) > 3
    for action in flags:
        help_text = (action.help or "") % {"default": action.default}
        assert help_text, f"{command} {action.option_strings[0]} has no help"
        assert "(default: " in help_text or "(required)" in help_text, f"{command} {action.option_strings[0]}"


def test_help_says_url_is_tritons_address_not_the_gateways(capsys):
    with pytest.raises(SystemExit):
        main(["remove", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--url HOST:PORT Triton's gRPC address" in text and "not the gateway's URL" in text
    assert "(default: 127.0.0.1:8001" in text and "--quality N WEBP/JPG quality, 20..99 (default: 95)" in text


@pytest.mark.parametrize(("inputs", "output", "message"), [
    (["photos"], "one.png", "-o one.png names one file, but the inputs are a directory"),
    (["photos/a.jpg", "photos/sub/b.jpg"], "one.png", "-o one.png names one file, but the inputs are several"),
    (["photos/a.jpg", "photos/sub/b.jpg"], "-", "-o - writes one result to standard output"),
    (["photos"], "-", "-o - writes one result to standard output"),
    (["photos/a.jpg"], "one.webp --format png", "-o one.webp names a WEBP file but --format is png"),
    (["photos/missing.jpg"], "out", "input 'photos/missing.jpg' does not exist"),
])
def test_outputs_that_do_not_fit_the_inputs_are_usage_errors(photos, listener, capsys, monkeypatch, inputs, output,
                                                             message):
    monkeypatch.chdir(photos.parent)
    out, *more = output.split()
    code = main(["remove", *inputs, "-o", out, *more, "--url", f"127.0.0.1:{listener.getsockname()[1]}"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rmbg remove: {message}") and err.count("\n") == 1, err
    assert not Path("one.png").exists() and not Path("out").exists() and connections(listener) == 0


def test_inputs_urls_stdin_and_distinct_output_names(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    urls = ["https://example.com/photos/x.jpg?sig=1", "http://other.example/x.jpg", "https://example.com/"]
    found = collect_inputs([*urls, "-", str(tmp_path / "a.jpg"), urls[0], "-"])
    assert [src for src, _ in found] == [*urls, "-", tmp_path / "a.jpg"]  # each source once
    dests = output_paths(found, Path("out"), "png")
    assert [str(d) for d in dests.values()] == ["out/x.png", "out/x_jpg.png", "out/image.png", "out/stdin.png",
                                                "out/a.png"]
    assert url_name("https://h/a%20b.webp") == Path("a b.webp") and url_name("https://h/..") == Path("image")
    taken = output_paths([("1", Path("x.jpg")), ("2", Path("x.jpg")), ("3", Path("x.jpg"))], Path("o"), "png")
    assert [str(d) for d in taken.values()] == ["o/x.png", "o/x_jpg.png", "o/x_2.png"]


def test_an_explicit_url_nobody_answers_is_a_clear_error(photos, capsys):
    port = free_port()
    assert main(["remove", str(photos), "-o", str(photos.parent / "out"), "--url", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"the server at 127.0.0.1:{port} (grpc) is not reachable; start it with 'rmbg serve'" in err
    assert "starting a server" not in err and not (photos.parent / "out").exists()


@pytest.fixture
def nothing_at_the_default(monkeypatch):
    """The default address made a free port, so these tests never meet a server someone else runs."""
    monkeypatch.setitem(endpoint.DEFAULT_PORTS, "grpc", free_port())
    monkeypatch.setitem(endpoint.DEFAULT_PORTS, "http", free_port())


def test_no_server_and_no_repository_says_how_to_build_one(photos, capsys, nothing_at_the_default):
    repo = photos.parent / "no-repo"
    assert main(["remove", str(photos), "-o", str(photos.parent / "out"), "--model-repository", str(repo)]) == 2
    err = capsys.readouterr().err
    assert f"nothing answers at {endpoint.default_url('grpc')}, and there is no model repository at {repo}/" in err
    assert f"rmbg build-repo --model isnet --weights imgly-isnet --out {repo} (other --weights: " in err
    assert "--url HOST:PORT" in err and "starting a server" not in err


def test_a_client_only_install_names_the_server_extra(photos, capsys, monkeypatch, nothing_at_the_default):
    monkeypatch.setitem(sys.modules, "rmbg_server.launcher", None)  # import now fails, as without the extra
    assert main(["remove", str(photos), "-o", str(photos.parent / "out")]) == 2
    err = capsys.readouterr().err
    assert "starting a server for this run needs the 'server' extra: pip install 'rmbg-triton[server]'" in err
    assert "--url HOST:PORT" in err


def test_a_model_missing_from_the_repository_is_named_before_a_server_starts(photos, capsys, tiny_repository,
                                                                             nothing_at_the_default):
    code = main(["remove", str(photos), "-o", str(photos.parent / "out"), "--model", "birefnet",
                 "--model-repository", str(tiny_repository)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"the birefnet model is not built: {tiny_repository}/ has rmbg_isnet. Build it with: rmbg build-repo " \
           f"--model birefnet --weights hf:briaai/RMBG-2.0 --out {tiny_repository} (other --weights: " in err
    assert err.rstrip().endswith("or use --model isnet") and "starting a server" not in err


def test_an_incomplete_repository_is_named_before_a_server_starts(photos, capsys, tiny_repository, tmp_path,
                                                                  nothing_at_the_default):
    repo = Path(shutil.copytree(tiny_repository, tmp_path / "repo"))
    for engine_file in (repo / "isnet" / "1").glob("model.*"):
        if engine_file.name != "model.py":
            engine_file.unlink()
    logs = set(Path(tempfile.gettempdir()).glob("rmbg-remove-triton-*.log"))
    assert main(["remove", str(photos), "-o", str(tmp_path / "out"), "--model-repository", str(repo)]) == 2
    err = capsys.readouterr().err
    assert f"nothing answers at {endpoint.default_url('grpc')}, and model repository {repo} is incomplete: isnet " \
           f"lacks {repo / 'isnet' / '1'}" in err and "Rebuild it: rmbg build-repo" in err
    assert "starting a server" not in err and set(Path(tempfile.gettempdir()).glob("rmbg-remove-triton-*.log")) <= logs
