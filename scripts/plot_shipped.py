"""The README's quality-speed plot of the shipped students: FID from `scripts/fidelity.py`
runs (2,000 samples, seed 11) against seconds per image at batch 1 from
`scripts/speed_shipped.py --json` (one run, the same machine). Points are matched by teacher
and label ("DD 1-step (flow, T 0.5)", ...); a label without both numbers is left out and named.

    python scripts/plot_shipped.py --speed speed.json --fidelity runs/fid-a/fidelity.json ... \
        --out docs/quality_speed.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ardistill.evaluation.html import quality_speed_png


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--speed", type=Path, required=True)
    p.add_argument("--fidelity", type=Path, nargs="+", required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    speed = {(r["teacher"], r["label"]): r["seconds_per_image"]
             for r in json.loads(args.speed.read_text())["rows"] if r["batch"] == args.batch}
    points, seen = [], set()
    for f in args.fidelity:
        doc = json.loads(f.read_text())
        for row in doc["rows"].values():
            key = (doc["teacher"], row["label"])
            if key in seen:
                continue
            seen.add(key)
            if key not in speed:
                print(f"plot_shipped: no batch-{args.batch} time for {key}, left out",
                      file=sys.stderr)
                continue
            points.append({"label": row["label"], "group": doc["teacher"], "fid": row["fid"],
                           "seconds_per_image": speed[key]})
    args.out.write_bytes(quality_speed_png(
        points, f"Shipped students: FID (2,000 samples) vs s/image at batch {args.batch}"))
    print(f"plot_shipped: {len(points)} points -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
