"""Request parameters the way the image APIs send them: multipart forms, urlencoded forms, JSON, the query.

remove.bg, Photoroom, Clipdrop, rembg's server and OpenAI's images API all take a multipart form
(files and fields), some also a urlencoded form, JSON or query parameters. Each adapter reads its
request here into plain ``Params`` and maps names itself; the value parsers below say what is
accepted when a value is refused, naming the API's own parameter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fastapi import Request
from PIL import ImageColor
from starlette.datastructures import UploadFile

from rmbg_hosted.errors import InvalidInputError, TooLargeError

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


@dataclass
class Params:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.fields.get(name, default)

    def names(self) -> set[str]:
        return set(self.fields) | set(self.files)


async def read_params(request: Request, *, max_file_bytes: int, json_body: bool = True) -> Params:
    """The query, then the body's fields and files (a form or, with ``json_body``, a JSON object)."""
    params = Params(fields=dict(request.query_params))
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind in FORM_TYPES:
        form = await request.form(max_files=8, max_fields=64, max_part_size=max_file_bytes)
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read(max_file_bytes + 1)
                if len(data) > max_file_bytes:
                    raise TooLargeError(f"is over the {max_file_bytes:,}-byte limit", parameter=name)
                params.files[name] = data
            else:
                params.fields[name] = value
    elif kind.endswith("json") and json_body:
        body = await request.body()
        if body.strip():
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):
                raise InvalidInputError("is not valid JSON", code="invalidJSON", parameter="body") from None
            if not isinstance(data, dict):
                raise InvalidInputError("must be a JSON object", code="invalidJSON", parameter="body")
            params.fields.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()})
    return params


# -- values -------------------------------------------------------------------------------------

def boolean(value: str | None, name: str, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise InvalidInputError(f"must be true or false, got {value[:40]!r}", parameter=name)


def integer(value: str | None, name: str, lo: int, hi: int) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise InvalidInputError(f"must be an integer {lo}..{hi}, got {value[:40]!r}", parameter=name) from None
    if not lo <= number <= hi:
        raise InvalidInputError(f"must be in {lo}..{hi}, got {number}", parameter=name)
    return number


def choice(value: str | None, name: str, allowed: tuple[str, ...], default: str | None = None) -> str | None:
    if value is None or value == "":
        return default
    if value.lower() not in allowed:
        raise InvalidInputError(f"must be one of {', '.join(allowed)}, got {value[:40]!r}", parameter=name)
    return value.lower()


def colour(value: str | None, name: str) -> list[int] | None:
    """A hex colour (``81d4fa``, ``#fff``, ``81d4fa77`` with alpha) or a CSS colour name -> [r, g, b, a]."""
    if value is None or value.strip() == "":
        return None
    text = value.strip()
    hex_digits = text.lstrip("#")
    if len(hex_digits) in (3, 4, 6, 8) and all(c in "0123456789abcdefABCDEF" for c in hex_digits):
        text = "#" + hex_digits
    try:
        rgba = ImageColor.getcolor(text, "RGBA")
    except ValueError:
        raise InvalidInputError(f"must be a hex colour (81d4fa, fff, 81d4fa77) or a colour name (green), got "
                                f"{value[:40]!r}", parameter=name) from None
    return list(rgba)  # type: ignore[arg-type]


def unsupported(params: Params, names: tuple[str, ...], why: str) -> None:
    """A parameter this pipeline cannot honour is the caller's error, never silently dropped."""
    for name in names:
        if params.fields.get(name) not in (None, "") or name in params.files:
            raise InvalidInputError(f"is not offered here: {why}", code="unsupportedParameter", parameter=name)


def known_only(params: Params, accepted: set[str]) -> None:
    unknown = sorted(params.names() - accepted)
    if unknown:
        raise InvalidInputError(f"unknown parameter; accepted: {', '.join(sorted(accepted))}",
                                code="unsupportedParameter", parameter=unknown[0][:60])


def uploaded(params: Params, name: str) -> bytes:
    """The file sent as multipart field ``name``; without it the error names that field."""
    if name not in params.files:
        raise InvalidInputError(f"is required: the image as multipart field {name}", code="missingParameter",
                                parameter=name)
    return params.files[name]


def one_image(params: Params, file: str, others: tuple[str, ...], what: str = "image") -> tuple[str, str | bytes]:
    """Exactly one image source: an uploaded file, or one of ``others`` (base64, URL): (its name, its value)."""
    given = [n for n in (file, *others) if n in params.files or params.fields.get(n)]
    if not given:
        raise InvalidInputError(f"is required: send the {what} as {' or '.join((file, *others))}",
                                code="missingParameter", parameter=file)
    if len(given) > 1:
        raise InvalidInputError(f"give one {what} source, got {', '.join(given)}", parameter=given[1])
    name = given[0]
    return name, params.files[name] if name in params.files else str(params.fields[name])

