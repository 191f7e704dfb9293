"""argparse ``type=`` functions: every flag value is checked while the command line is parsed.

A bad value then stops the command before any file is read or any request is sent, with one
message that names the flag and what it accepts (argparse prints ``argument --quality: ...``
and exits 2). Values of OPTIONS flags are checked by ``rmbg_backend.options.parse_options``, the
schema the server applies, so the command line and the server can never disagree on a range.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rmbg_backend.errors import RequestError
from rmbg_backend.options import parse_options
from rmbg_hosted.fetch import parse_cidrs


def _number(text: str) -> int | float | str:
    """An int or a float where the text is one; otherwise the text, for the schema to name as wrong."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _digits_or_text(text: str) -> int | str:
    """``30`` -> 30 (pixels); ``"30px"`` and ``"10%"`` stay text, as the OPTIONS key takes them."""
    return int(text) if text.isdigit() else text


def _ints(separators: str, count: int, what: str) -> Callable[[str], list[int]]:
    """``"1,2,3,4"`` (or ``"800x600"``) -> a list of ``count`` integers; ranges are the schema's job."""
    def parse(text: str) -> list[int]:
        for sep in separators:
            parts = text.split(sep)
            if len(parts) == count:
                try:
                    return [int(p) for p in parts]
                except ValueError:
                    break
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return parse


def _position(text: str) -> str | list[str]:
    if text in ("center", "original"):
        return text
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected center, original or X%,Y% (e.g. 50%,100%), got {text!r}")
    return [p if p.endswith("%") else f"{p}%" for p in parts]


def option(key: str, convert: Callable[[str], Any] = _number) -> Callable[[str], Any]:
    """The type of the flag for OPTIONS ``key``: ``convert`` the text, then validate it as the server would."""
    def parse(text: str) -> Any:
        value = convert(text)
        try:
            parse_options(json.dumps({key: value}))
        except RequestError as exc:
            raise argparse.ArgumentTypeError(exc.message) from None
        return value
    parse.__name__ = key  # argparse's fallback messages name the type
    return parse


rgba = option("rgba", _ints(",", 4, "R,G,B,A (4 integers 0..255)"))
crop_margin = option("cropMargin", _digits_or_text)
output_size = option("outputSize", _ints("x,", 2, "WIDTHxHEIGHT"))
position = option("position", _position)
shadow_offset = option("shadowOffset", _ints(",", 2, "DX,DY"))


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text!r}")
    return value


def triton_address(text: str) -> str:
    """HOST:PORT of Triton's gRPC (or HTTP) endpoint; a URL here is usually the gateway's, so say so."""
    if "://" in text:
        raise argparse.ArgumentTypeError(
            f"expected Triton's HOST:PORT (e.g. 127.0.0.1:8001), got the URL {text!r}; this command talks to "
            "Triton directly, not to the gateway's http://HOST:8080 routes")
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT with a port 1..65535 (e.g. 127.0.0.1:8001), "
                                         f"got {text!r}")
    return text


def cidr(text: str) -> str:
    """A range URL inputs may resolve to although it is not public (``FetchPolicy.allowing``)."""
    try:
        parse_cidrs([text])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a CIDR such as 127.0.0.1/32, 10.0.0.0/8 or fd00::/8, "
                                         f"got {text!r}") from None
    return text


def readable_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    return path
