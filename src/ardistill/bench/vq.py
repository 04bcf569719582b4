"""VQ decoding speed: the fast decoder against the plain modules and the official decoder.

For each preset's tokenizer (random weights: speed does not depend on them; seed 0), the same
latents of random tokens are decoded (LlamaGen `VQModel.decode`, VAR `VQVAE.fhat_to_img`) by
  - `ardistill`: the default path (`teachers.fast_decoder` on a CPU in float32),
  - `plain`: the same modules with the fast path off (the official architecture, op for op),
  - `official`: with `--official-llamagen DIR` / `--official-var DIR`, the official decoder
    classes imported from a checkout (LlamaGen `tokenizer/tokenizer_image/vq_model.py`, VAR
    `models/basic_vae.py`) holding the same weights,
timed side by side in rotated rounds (`bench.timing.interleaved_times`: each round runs every
decoder once, in a rotating order) after warm-up. Printed: median and min seconds per image,
the speed-up over `official` (else over `plain`), and the largest absolute difference of each
output from the `plain` one and from a float64 copy of the model.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ardistill.bench.timing import interleaved_times, machine_header
from ardistill.errors import UserError
from ardistill.teachers import fast_decoder
from ardistill.teachers.llamagen.vq import VQModel
from ardistill.teachers.registry import get_preset
from ardistill.teachers.var.vqvae import VQVAE
from ardistill.utils.threads import intra_op_threads


@dataclass
class Options:
    """The options of `ardistill bench vq` (the command line's flags, same names)."""

    presets: str = "llamagen-b,var-d16"
    batch: int = 1
    repeats: int = 5
    threads: int = 0
    official_llamagen: Path | None = None
    official_var: Path | None = None
    json: Path | None = None


def _import_file(path: Path, name: str):
    if not path.is_file():
        raise UserError(f"{path}: not found (is the folder a checkout of the official code?)")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def official_decoder(tok, root: Path):
    """The official decoder holding `tok`'s weights: a callable latents -> image, as the
    official decode computes it."""
    if isinstance(tok, VQModel):
        mod = _import_file(root / "tokenizer" / "tokenizer_image" / "vq_model.py",
                           "_official_llamagen_vq_model")
        cfg = tok.config
        dec = mod.Decoder(z_channels=cfg.z_channels, ch=cfg.ch, ch_mult=list(cfg.decoder_ch_mult),
                          num_res_blocks=cfg.num_res_blocks, norm_type=cfg.norm_type,
                          dropout=cfg.dropout_p, out_channels=cfg.out_channels)
    else:
        mod = _import_file(root / "models" / "basic_vae.py", "_official_var_basic_vae")
        c = tok.cfg
        dec = mod.Decoder(ch=c.ch, ch_mult=tuple(c.ch_mult), num_res_blocks=c.num_res_blocks,
                          dropout=c.dropout, in_channels=c.in_channels, z_channels=c.z_channels,
                          using_sa=c.using_sa, using_mid_sa=c.using_mid_sa)
    dec.load_state_dict(tok.decoder.state_dict(), strict=True)
    dec.eval()
    pqc = tok.post_quant_conv
    if isinstance(tok, VQModel):
        return lambda z: dec(pqc(z))
    return lambda f: dec(pqc(f)).clamp_(-1, 1)


def _tokenizer(name: str):
    preset = get_preset(name)
    torch.manual_seed(0)
    if preset.family == "llamagen":
        return VQModel(preset.tokenizer_config).eval()
    if preset.family == "var":
        return VQVAE(preset.tokenizer_config).eval()
    raise UserError(f"bench vq: preset {name!r} has no VQ decoder this benchmark knows")


def _latents(tok, batch: int, grid: int) -> torch.Tensor:
    """Decoder inputs of random tokens: LlamaGen codewords on a grid x grid map, VAR's f_hat."""
    g = torch.Generator().manual_seed(1)
    if isinstance(tok, VQModel):
        side = grid
        idx = torch.randint(0, tok.config.codebook_size, (batch, side * side), generator=g)
        z = tok.quantize.codebook()[idx]
        return z.reshape(batch, side, side, -1).permute(0, 3, 1, 2).contiguous()
    L = sum(p * p for p in tok.patch_nums)
    idx = torch.randint(0, tok.cfg.vocab_size, (batch, L), generator=g)
    return tok.indices_to_fhat(idx)


def _decode(tok):
    return tok.decode if isinstance(tok, VQModel) else tok.fhat_to_img


def bench_preset(name: str, opts: Options) -> dict:
    tok = _tokenizer(name)
    grid = math.isqrt(getattr(get_preset(name).model_config, "block_size", 0))
    with torch.inference_mode():
        z = _latents(tok, opts.batch, grid)
        fast_fn = _decode(tok)
        tok64 = copy.deepcopy(tok).double()
        with fast_decoder.disabled():
            ref64 = _decode(tok64)(z.double())

        def plain():
            with fast_decoder.disabled():
                return fast_fn(z)

        fns, names = [lambda: fast_fn(z), plain], ["ardistill", "plain"]
        root = opts.official_llamagen if isinstance(tok, VQModel) else opts.official_var
        if root is not None:
            off = official_decoder(tok, Path(root))
            fns.append(lambda: off(z))
            names.append("official")
        times = interleaved_times(fns, opts.repeats)
        on = fast_decoder.applies(tok.decoder, tok.post_quant_conv, z)
    outs = {n: t.result for n, t in zip(names, times)}
    base = "official" if "official" in outs else "plain"
    rows = []
    for n, t in zip(names, times):
        rows.append({"decoder": n, "s_per_image": t.median / opts.batch,
                     "min_s_per_image": t.min / opts.batch, "repeats": t.repeats,
                     "speedup": times[names.index(base)].median / t.median,
                     "max_abs_diff_vs_plain": float((outs[n] - outs["plain"]).abs().max()),
                     "max_abs_err_vs_float64": float((outs[n].double() - ref64).abs().max())})
    return {"preset": name, "batch": opts.batch, "image": list(outs["plain"].shape[1:]),
            "fast_path": on, "baseline": base, "rows": rows}


def run(opts: Options) -> int:
    with intra_op_threads(opts.threads or None):
        print(machine_header("fp32", "cpu"), flush=True)
        if not fast_decoder.available():
            print(f"fast VQ decoder unavailable here: {fast_decoder.why_not()}", flush=True)
        results = []
        for name in [p for p in opts.presets.split(",") if p]:
            res = bench_preset(name, opts)
            results.append(res)
            print(f"{name}: VQ decode, batch {res['batch']}, image {res['image']}, "
                  f"fast path {'on' if res['fast_path'] else 'off'}", flush=True)
            for r in res["rows"]:
                print(f"  {r['decoder']:<10} {r['s_per_image']:8.3f} s/image (median of "
                      f"{r['repeats']}, min {r['min_s_per_image']:.3f})  "
                      f"{r['speedup']:5.2f}x vs {res['baseline']}  "
                      f"max |diff| vs plain {r['max_abs_diff_vs_plain']:.2e}, "
                      f"vs float64 {r['max_abs_err_vs_float64']:.2e}", flush=True)
    if opts.json is not None:
        Path(opts.json).write_text(json.dumps(results, indent=1))
    return 0
