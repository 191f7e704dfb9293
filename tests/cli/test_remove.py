from pathlib import Path

import pytest

from rmbg_cli.files import collect_inputs, output_paths
from rmbg_cli.main import build_parser
from rmbg_cli.remove import options_from_args


def test_every_option_is_reachable_from_flags():
    args = build_parser().parse_args([
        "remove", "x.jpg", "-o", "out", "--format", "jpg", "--quality", "80", "--mask-only",
        "--bg-color", "1,2,3,4", "--alpha-matting", "--fg-threshold", "200", "--bg-threshold", "20",
        "--erode-size", "5", "--post-process-mask", "--preserve-alpha"])
    assert options_from_args(args) == {
        "outputFormat": "JPG", "outputQuality": 80, "returnOnlyMask": True, "rgba": [1, 2, 3, 4],
        "alphaMatting": True, "alphaMattingForegroundThreshold": 200, "alphaMattingBackgroundThreshold": 20,
        "alphaMattingErodeSize": 5, "postProcessMask": True, "preserveAlpha": True}


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
