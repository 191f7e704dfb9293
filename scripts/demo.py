"""`make demo`: start the server, remove backgrounds of sample photos into out/, stop the server.

Shows the option set on a few real photos and writes out/preview.png, a contact sheet of
inputs and results (cut-outs over a checkerboard, so transparency is visible), each column
labelled with what it shows and the option that made it.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rmbg_client import RmbgClient
from rmbg_server.launcher import ServerConfig, TritonServer

DEFAULT_IMAGES = ["grabcut_teddy.jpg", "ecssd_0074.jpg", "grabcut_person1.jpg", "davis_bike_00000.jpg"]
INPUT_LABEL = "input"
# file suffix -> (column label, OPTIONS)
VARIANTS = {
    "cutout.png": ("cut-out", {}),
    "mask.png": ("mask (returnOnlyMask)", {"returnOnlyMask": True}),
    "on-blue.jpg": ("on colour (rgba)", {"outputFormat": "JPG", "rgba": [30, 90, 200, 255], "outputQuality": 90}),
    "clean-edges.webp": ("refined edges (postProcessMask)", {"outputFormat": "WEBP", "postProcessMask": True}),
}
LABEL_HEIGHT = 30
GAP = 8


def checkerboard(w: int, h: int, cell: int = 16) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    v = np.where(((x // cell) + (y // cell)) % 2 == 0, 235, 200).astype(np.uint8)
    return Image.fromarray(np.dstack([v, v, v, np.full_like(v, 255)]), "RGBA")


def contact_sheet(rows: list[list[Image.Image]], labels: list[str], height: int = 220) -> Image.Image:
    """One row per photo, one labelled column per kind of result; each column as wide as its widest thumbnail."""
    if any(len(row) != len(labels) for row in rows):
        raise ValueError(f"every row needs one image per label ({len(labels)})")
    thumbs = []
    for row in rows:
        scaled = []
        for im in row:
            im = im.convert("RGBA")
            im = im.resize((max(1, round(im.width * height / im.height)), height))
            board = checkerboard(im.width, im.height)
            board.alpha_composite(im)
            scaled.append(board)
        thumbs.append(scaled)
    font = ImageFont.load_default(size=16)
    widths = [max(max(row[c].width for row in thumbs), round(font.getlength(label)) + GAP)
              for c, label in enumerate(labels)]
    lefts = [sum(widths[:c]) + GAP * c for c in range(len(labels))]
    sheet = Image.new("RGBA", (sum(widths) + GAP * (len(widths) - 1), LABEL_HEIGHT + len(thumbs) * (height + GAP)),
                      (255, 255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for label, left, width in zip(labels, lefts, widths, strict=True):
        draw.text((left + width / 2, LABEL_HEIGHT / 2), label, fill=(40, 40, 40, 255), font=font, anchor="mm")
    for r, row in enumerate(thumbs):
        for t, left, width in zip(row, lefts, widths, strict=True):  # centred under the column's label
            sheet.paste(t, (left + (width - t.width) // 2, LABEL_HEIGHT + r * (height + GAP)))
    return sheet.convert("RGB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "eval" / "images")
    ap.add_argument("--repo", type=Path, default=Path("model_repository"))
    ap.add_argument("--out", type=Path, default=Path("out"))
    args = ap.parse_args()
    files = [args.images / n for n in DEFAULT_IMAGES if (args.images / n).exists()]
    if not files:
        files = sorted(p for p in args.images.glob("*") if p.suffix.lower() in (".jpg", ".png"))[:4]
    if not files:
        print(f"no sample images in {args.images}; pass --images DIR", file=sys.stderr)
        return 2
    cfg = ServerConfig.on_free_ports(args.repo)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "triton.log"
    print(f"starting Triton on 127.0.0.1 (gRPC {cfg.grpc_port}, HTTP {cfg.http_port}), log in {log} ...", flush=True)
    t0 = time.monotonic()
    with TritonServer(cfg, log_file=log) as server:
        print(f"ready in {time.monotonic() - t0:.1f} s", flush=True)
        client = RmbgClient(server.grpc_url)
        rows = []
        for path in files:
            data = path.read_bytes()
            row = [Image.open(io.BytesIO(data))]
            for suffix, (_, options) in VARIANTS.items():
                result = client.remove(data, options)
                dest = args.out / f"{path.stem}.{suffix}"
                dest.write_bytes(result.data)
                row.append(Image.open(io.BytesIO(result.data)))
                t = result.info["timings"]
                print(f"  {dest}  {result.info['width']}x{result.info['height']}  "
                      f"model {t['model_ms']:.0f} ms, pre {t['decode_ms'] + t['preprocess_ms']:.0f} ms, "
                      f"post {t['postprocess_ms'] + t['encode_ms']:.0f} ms")
            rows.append(row)
    contact_sheet(rows, [INPUT_LABEL, *(label for label, _ in VARIANTS.values())]).save(args.out / "preview.png")
    print(f"\nserver stopped. Results: {args.out}/ (one file per image and option set);"
          f" overview: {args.out}/preview.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
