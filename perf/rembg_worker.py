"""rembg 2.0.86 in its own venv (it needs numpy 2; the Triton stub needs numpy 1), driven line by line.

stdin: one JSON object per line, {"image": PATH, "out": PATH (optional)}; stdout: {"ms": wall ms of
remove(), "bytes": output size}; with "out", the cut-out is written there (outside the timing).
Downloads are impossible: pooch.retrieve raises, and the model must already be under U2NET_HOME.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> int:
    import pooch

    def refuse(*args, **kwargs):
        raise RuntimeError("rembg tried to download a model; the benchmark forbids it")

    pooch.retrieve = refuse
    from rembg import new_session, remove

    session = new_session("dis_custom", model_path=sys.argv[1])
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        data = open(request["image"], "rb").read()
        t0 = time.perf_counter()
        out = remove(data, session=session)
        ms = (time.perf_counter() - t0) * 1000.0
        if request.get("out"):
            with open(request["out"], "wb") as f:
                f.write(out)
        print(json.dumps({"ms": ms, "bytes": len(out)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
