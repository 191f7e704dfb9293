"""Which inputs ``rmbg remove`` reads and where each result goes.

An input is a file, a directory (searched recursively for images), an http(s) URL (fetched by
the client library under its rules) or ``-`` (standard input). ``-o`` is a directory, one file
for one input, or ``-`` (standard output, one input).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from rmbg_client.images import is_url

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif",
                  ".heic", ".heif", ".jfif", ".jp2", ".tga", ".ppm", ".pgm"}
STDIO = "-"
# -o suffixes that name one output file (else -o is a directory), and the --format each implies.
FILE_FORMATS = {".png": "png", ".webp": "webp", ".jpg": "jpg", ".jpeg": "jpg"}

Source = Path | str  # a file, an http(s) URL or "-"


class UsageError(ValueError):
    """The inputs and ``-o`` do not fit together; the message says what would."""


def url_name(url: str) -> Path:
    """The file name a URL's result gets in an output directory: its last path segment, else ``image``."""
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    return Path(name if name not in ("", ".", "..") else "image")


def collect_inputs(paths: list[str]) -> list[tuple[Source, Path]]:
    """(source, path relative to the output directory) for each file, URL, ``-``, and image under a dir.

    A source named twice is read once. Raises FileNotFoundError for a path that does not exist.
    """
    found: dict[Source, Path] = {}
    for raw in paths:
        if raw == STDIO:
            found.setdefault(STDIO, Path("stdin"))
        elif is_url(raw):
            found.setdefault(raw.strip(), url_name(raw.strip()))
        elif (p := Path(raw)).is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                    found.setdefault(f, f.relative_to(p))
        elif p.is_file():
            found.setdefault(p, Path(p.name))
        else:
            raise FileNotFoundError(f"input {raw!r} does not exist (give image files, directories, "
                                    "http(s) URLs or - for standard input)")
    return list(found.items())


def output_paths(inputs: list[tuple[Source, Path]], out: Path, extension: str) -> dict[Source, Path]:
    """One distinct output per input, keeping sub-directories; ``a.jpg``+``a.png`` don't collide."""
    result: dict[Source, Path] = {}
    taken: set[Path] = set()
    for src, rel in inputs:
        dest = out / rel.with_suffix(f".{extension}")
        if dest in taken:
            dest = out / rel.with_name(f"{rel.stem}_{rel.suffix.lstrip('.') or 'x'}.{extension}")
        n = 2
        while dest in taken:  # the same name from two URLs, or a name that the rule above already took
            dest = out / rel.with_name(f"{rel.stem}_{n}.{extension}")
            n += 1
        taken.add(dest)
        result[src] = dest
    return result


def output_format(output: str, requested: str | None) -> str:
    """The --format of a run: as given, else implied by a file name given to -o, else png."""
    implied = FILE_FORMATS.get(Path(output).suffix.lower()) if output != STDIO else None
    if requested and implied and requested not in (implied, "auto"):
        raise UsageError(f"-o {output} names a {implied.upper()} file but --format is {requested}; "
                         f"change one of them")
    return requested or implied or "png"


def plan_outputs(raw_inputs: list[str], inputs: list[tuple[Source, Path]], output: str,
                 extension: str) -> dict[Source, Path | None]:
    """Where each input's result goes (None: standard output); refuses -o forms that do not fit the inputs."""
    several = len(raw_inputs) > 1 or any(Path(r).is_dir() for r in raw_inputs if r != STDIO and not is_url(r))
    if output == STDIO:
        if several or len(inputs) != 1:
            raise UsageError("-o - writes one result to standard output; give one input file, URL or -, "
                             "or a directory as -o for several")
        return {inputs[0][0]: None}
    target = Path(output)
    if target.suffix.lower() in FILE_FORMATS and not target.is_dir():
        if several:
            raise UsageError(f"-o {output} names one file, but the inputs are "
                             f"{'several' if len(raw_inputs) > 1 else 'a directory'}; "
                             f"give a directory for their results (e.g. -o {target.with_suffix('')}/)")
        return {inputs[0][0]: target}
    return dict(output_paths(inputs, target, extension))
