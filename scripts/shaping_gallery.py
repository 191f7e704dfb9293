"""Before/after pictures of the output-shaping options for the README (docs/shaping/*.jpg).

Runs the served pipeline's own steps (preprocess -> real IS-Net weights -> postprocess, the
functions the Triton models call) on real eval photos, and writes one small side-by-side JPEG per
option: the input (or the plain cut-out) left, the option's result right, transparency shown on a
checkerboard. Needs the model repository (`make repo`).

    python scripts/shaping_gallery.py [--model model_repository/isnet/1/model.onnx] [--out docs/shaping]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rmbg_backend import steps  # noqa: E402
from rmbg_backend.engines import make_engine  # noqa: E402
from rmbg_backend.families import family  # noqa: E402
from tests.conftest import eval_pairs  # noqa: E402

PANEL = 256  # width of each half
# (file stem, photo id, before settings or None for the input photo, after settings, caption)
GALLERY = [
    ("crop", "grabcut_sheep", None, {"crop": True, "cropMargin": "10%"},
     '"crop": true, "cropMargin": "10%"'),
    ("canvas", "ecssd_0039", None, {"outputSize": [512, 512], "scale": 0.8, "position": [50, 100]},
     '"outputSize": [512, 512], "scale": 0.8, "position": [50, 100]'),
    ("position", "grabcut_person4", None, {"outputSize": [600, 300], "scale": 0.6, "position": "original"},
     '"outputSize": [600, 300], "scale": 0.6, "position": "original"'),
    ("shadow", "grabcut_teddy", None, {"crop": True, "cropMargin": 40, "shadow": True, "shadowOpacity": 0.6,
                                        "shadowBlur": 24, "shadowOffset": [12, 12], "rgba": [240, 243, 247, 255]},
     '"shadow": true, "shadowOpacity": 0.6, "shadowBlur": 24, "shadowOffset": [12, 12]'),
    ("refine", "grabcut_teddy", {"rgba": [230, 238, 246, 255]},
     {"rgba": [230, 238, 246, 255], "refineForeground": True},
     'left: plain cut-out; right: "refineForeground": true (edge zoomed)'),
    ("auto", "grabcut_teddy", {"outputFormat": "AUTO"}, {"outputFormat": "AUTO", "rgba": [255, 255, 255, 255]},
     '"outputFormat": "AUTO": transparent -> PNG (left), on a colour -> JPG (right)'),
]


def checkerboard(h: int, w: int, cell: int = 8) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w]
    board = np.where(((yy // cell) + (xx // cell)) % 2 == 0, 255, 220).astype(np.uint8)
    return Image.fromarray(board).convert("RGB")


def flatten(im: Image.Image) -> Image.Image:
    """Transparency onto a checkerboard, so the picture shows what is transparent."""
    if im.mode in ("RGBA", "LA"):
        base = checkerboard(im.height, im.width)
        base.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
        return base
    return im.convert("RGB")


def fit(im: Image.Image, width: int = PANEL) -> Image.Image:
    return im.resize((width, max(1, round(im.height * width / im.width))), Image.LANCZOS)


def edge_zoom(im: Image.Image, alpha: np.ndarray) -> Image.Image:
    """A 3x zoom of the window with the most soft-edge pixels (where refineForeground acts)."""
    soft = ((alpha > 10) & (alpha < 245)).astype(np.float32)
    size = min(alpha.shape) // 3
    best, at = -1.0, (0, 0)
    for y in range(0, alpha.shape[0] - size, size // 4):
        for x in range(0, alpha.shape[1] - size, size // 4):
            score = float(soft[y:y + size, x:x + size].sum())
            if score > best:
                best, at = score, (y, x)
    y, x = at
    return im.crop((x, y, x + size, y + size)).resize((size * 3, size * 3), Image.NEAREST)


class Pipeline:
    """The served steps around the real IS-Net engine, without a server."""

    def __init__(self, model: Path) -> None:
        self.spec = family("isnet").spec()
        self.engine = make_engine(str(model))

    def run(self, data: bytes, settings: dict) -> Image.Image:
        prepared = steps.preprocess(data, json.dumps(settings).encode(), self.spec)
        mask = self.engine.run(prepared.model_input[None])[0]
        out, info = steps.postprocess(mask, prepared.pixels, prepared.meta, self.spec)
        im = Image.open(io.BytesIO(out))
        im.load()
        return im


def side_by_side(left: Image.Image, right: Image.Image, caption: str) -> Image.Image:
    left, right = fit(flatten(left)), fit(flatten(right))
    h = max(left.height, right.height)
    sheet = Image.new("RGB", (2 * PANEL + 6, h + 22), (255, 255, 255))
    sheet.paste(left, (0, (h - left.height) // 2))
    sheet.paste(right, (PANEL + 6, (h - right.height) // 2))
    ImageDraw.Draw(sheet).text((4, h + 5), caption, fill=(40, 40, 40))
    return sheet


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "model_repository" / "isnet" / "1" / "model.onnx")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "shaping")
    args = ap.parse_args()
    if not args.model.is_file():
        print(f"no model at {args.model}: run `make repo` first (real IS-Net weights)", file=sys.stderr)
        return 2
    pipeline = Pipeline(args.model)
    photos = {p.id: p for p in eval_pairs()}
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for stem, photo_id, before_settings, after_settings, caption in GALLERY:
        data = photos[photo_id].image.read_bytes()
        before = Image.open(io.BytesIO(data)) if before_settings is None else pipeline.run(data, before_settings)
        after = pipeline.run(data, after_settings)
        if stem == "refine":  # the difference lives in the soft edge: show it zoomed
            alpha = np.asarray(pipeline.run(data, {"returnOnlyMask": True}))
            before, after = edge_zoom(before, alpha), edge_zoom(after, alpha)
        path = args.out / f"{stem}.jpg"
        side_by_side(before, after, caption).save(path, quality=82, optimize=True)
        total += path.stat().st_size
        print(f"{path} ({path.stat().st_size // 1024} KB)")
    print(f"{len(GALLERY)} pictures, {total // 1024} KB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
