"""Which files ``rmbg remove`` reads and where each result goes."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif",
                  ".heic", ".heif", ".jfif", ".jp2", ".tga", ".ppm", ".pgm"}


def collect_inputs(paths: list[str]) -> list[tuple[Path, Path]]:
    """(file, path relative to its input root) for files given and image files under dirs."""
    found: list[tuple[Path, Path]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                    found.append((f, f.relative_to(p)))
        elif p.is_file():
            found.append((p, Path(p.name)))
        else:
            raise FileNotFoundError(f"input {raw!r} does not exist")
    return found


def output_paths(inputs: list[tuple[Path, Path]], out: Path, extension: str) -> dict[Path, Path]:
    """One distinct output per input, keeping sub-directories; ``a.jpg``+``a.png`` don't collide."""
    result: dict[Path, Path] = {}
    taken: set[Path] = set()
    for src, rel in inputs:
        dest = out / rel.with_suffix(f".{extension}")
        if dest in taken:
            dest = out / rel.with_name(f"{rel.stem}_{rel.suffix.lstrip('.')}.{extension}")
        taken.add(dest)
        result[src] = dest
    return result
