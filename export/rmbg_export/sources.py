"""Weight sources: ``imgly-isnet`` (npm), ``hf:<repo>``, a local file, ``synthetic``.

Each resolves to a local file plus the licence users must see before they ship it; the
licences themselves are part of each family's record in ``rmbg_backend.families``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rmbg_backend.families import licence_of
from rmbg_export.cache import cache_dir, file_digest, human_size

log = logging.getLogger(__name__)

IMGLY_PACKAGE = "@imgly/background-removal-data@1.4.5"

class SourceError(RuntimeError):
    """A weight source could not be resolved; the message says what to do."""


@dataclass(frozen=True)
class Weights:
    path: Path | None  # None for ``synthetic``
    kind: str  # onnx | pth | safetensors | synthetic
    source: str
    licence: str


def assemble_chunks(dist: Path, resource: str, target: Path) -> Path:
    """Concatenate the chunks of ``resource`` from an unpacked package's ``dist/``.

    Each chunk is named by its sha256; a mismatch, a gap or an overlap is an error.
    """
    resources = json.loads((dist / "resources.json").read_text())
    if resource not in resources:
        raise SourceError(f"{resource} not in resources.json (has {', '.join(resources)})")
    entry = resources[resource]
    chunks = sorted(entry["chunks"], key=lambda c: c["offsets"][0])
    tmp = target.with_suffix(".part")
    expected = 0
    with tmp.open("wb") as out:
        for chunk in chunks:
            start, end = chunk["offsets"]
            if start != expected:
                raise SourceError(f"chunk {chunk['hash'][:12]} starts at {start}, expected {expected}")
            data = (dist / chunk["hash"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != chunk["hash"]:
                raise SourceError(f"chunk {chunk['hash'][:12]} fails its sha256 check: corrupt download")
            if len(data) != end - start:
                raise SourceError(f"chunk {chunk['hash'][:12]} has {len(data)} bytes, expected {end - start}")
            out.write(data)
            expected = end
    if "size" in entry and expected != entry["size"]:
        tmp.unlink()
        raise SourceError(f"{resource}: assembled {expected} bytes, resources.json says {entry['size']}")
    tmp.replace(target)
    return target


def fetch_imgly_isnet(variant: str = "medium", npm: str | None = None) -> Path:
    """Real IS-Net weights from the npm data package (AGPL-3.0), cached after the first run."""
    target = cache_dir() / f"imgly-isnet-{variant}-1.4.5.onnx"
    if target.exists():
        return target
    npm = npm or shutil.which("npm")
    if not npm:
        raise SourceError(
            "npm is not installed: it is needed to fetch the imgly-isnet weights. Install Node.js "
            "and npm (Debian: apt-get install npm) or pass a local .onnx file with --weights."
        )
    with tempfile.TemporaryDirectory(prefix="rmbg-npm-") as tmp:
        log.info("fetching %s with npm pack (about 136 MB, once)...", IMGLY_PACKAGE)
        proc = subprocess.run(
            [npm, "pack", IMGLY_PACKAGE, "--pack-destination", tmp, "--silent"],
            capture_output=True, text=True, timeout=900,
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise SourceError(
                f"npm pack {IMGLY_PACKAGE} failed (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-800:]}"
            )
        with tarfile.open(tarballs[0]) as tar:
            tar.extractall(tmp, filter="data")
        package = Path(tmp) / "package"
        assemble_chunks(package / "dist", f"/models/{variant}", target)
        shutil.copy(package / "LICENSE.md", cache_dir() / "imgly-LICENSE.md")
    log.info("assembled %s (%s, sha256 %s...)", target, human_size(target.stat().st_size), file_digest(target)[:16])
    return target


_HF_CANDIDATES = ("onnx/model.onnx", "model.onnx", "model.safetensors", "model.pth",
                  "pytorch_model.bin")


def fetch_hf(repo: str, revision: str | None = None) -> Path:
    """Download the first checkpoint file the repo has, through huggingface_hub.

    ``HF_ENDPOINT`` is read at call time (not at import) so a mirror or a local stand-in works.
    """
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import EntryNotFoundError
    except ImportError:
        raise SourceError("hf: sources need huggingface_hub: pip install 'rmbg-triton[export]'") from None
    errors = []
    for filename in _HF_CANDIDATES:
        try:
            return Path(hf_hub_download(
                repo, filename, revision=revision, endpoint=os.environ.get("HF_ENDPOINT"),
                cache_dir=str(cache_dir() / "huggingface"),
            ))
        except EntryNotFoundError:
            errors.append(filename)
        except Exception as exc:  # noqa: BLE001 - network, auth, gated repo...
            raise SourceError(f"could not download {filename} from hf:{repo}: {exc}") from None
    raise SourceError(f"hf:{repo} has none of {', '.join(errors)}")


def resolve(source: str) -> Weights:
    """Turn a --weights SOURCE value into a local file (downloading once where needed)."""
    if source == "imgly-isnet":
        return Weights(fetch_imgly_isnet(), "onnx", source, licence_of(source))
    if source == "synthetic":
        return Weights(None, "synthetic", source, licence_of(source))
    if source.startswith("hf:"):
        repo = source[3:]
        if "/" not in repo:
            raise SourceError(f"hf: source must be hf:<owner>/<repo>, got {source!r}")
        path = fetch_hf(repo)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise SourceError(
                f"weights {source!r}: no such file; use imgly-isnet, hf:<repo>, synthetic "
                "or a local .onnx/.pth/.safetensors file"
            )
    kinds = {".onnx": "onnx", ".pth": "pth", ".pt": "pth", ".bin": "pth", ".safetensors": "safetensors"}
    kind = kinds.get(path.suffix.lower())
    if kind is None:
        raise SourceError(f"weights {path}: unknown file type {path.suffix!r}; expected {', '.join(kinds)}")
    return Weights(path, kind, source, licence_of(source))
