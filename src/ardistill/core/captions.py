"""Caption features for text-conditional teachers (`--captions FILE` of gen-pairs and sample).

FILE is a `.npz` or `.safetensors` holding `caption` (R, T, D) float16/float32 features
(left-padded: valid rows at the end, padding zero) and `caption_mask` (R, T) bool (or 0/1
integers), True = valid caption token. Sample i uses row `i mod R` (`core.seeds`). A pairs
dataset keeps its own copy as `captions.safetensors` (memory-mapped by the reader), and records
the sha256 of both the given file and the copy.

Prompts become such features through a text encoder (`ardistill.text`): `encode_captions_file`
(`ardistill encode-captions --prompts FILE --encoder ... --out F`) writes the file,
`captions_from_prompts` (`--prompts FILE --encoder ...` of gen-pairs and sample) keeps it in
memory. Their `source_sha256` is the same: the checksum of the .safetensors bytes
`caption_file_bytes` gives (what `encode-captions --out F.safetensors` writes), so a dataset
made from prompts records the identity it would have from that file. `caption_source` is the
one place that picks between `--captions` and `--prompts`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ardistill.errors import DataFileError
from ardistill.teachers.base import Condition
from ardistill.text import EncoderSpec, encode_prompts, read_prompts
from ardistill.utils.files import (
    atomic_write_bytes,
    atomic_write_with,
    encode_safetensors,
    sha256_bytes,
    sha256_file,
)

SUFFIXES = (".npz", ".safetensors")


@dataclass
class Captions:
    """caption: (R, T, D) float16/float32; mask: (R, T) bool (numpy, possibly memory-mapped).
    source_sha256: checksum of the file they were read from. prompts: the R texts when they
    were encoded from prompts here (`captions_from_prompts`), else None."""

    caption: np.ndarray
    mask: np.ndarray
    source_sha256: str
    prompts: list[str] | None = None

    def __post_init__(self) -> None:
        c, m = self.caption, self.mask
        if c.ndim != 3 or m.shape != c.shape[:2]:
            raise DataFileError(f"captions: need caption (R, T, D) and caption_mask (R, T), "
                                 f"got {c.shape} and {m.shape}")
        if c.shape[0] == 0:
            raise DataFileError("captions: the file has no rows")

    @property
    def rows(self) -> int:
        return int(self.caption.shape[0])

    def condition(self, rows: np.ndarray) -> Condition:
        """(B,) int64 rows -> Condition with caption (B, T, D) float32 and mask (B, T) bool."""
        rows = np.asarray(rows, dtype=np.int64)
        cap = torch.from_numpy(np.asarray(self.caption[rows], dtype=np.float32))
        mask = torch.from_numpy(np.asarray(self.mask[rows], dtype=np.bool_))
        return Condition(caption=cap, caption_mask=mask)

    def identity(self) -> dict:
        return {"kind": "caption", "rows": self.rows, "tokens": int(self.caption.shape[1]),
                "dim": int(self.caption.shape[2]), "dtype": str(self.caption.dtype),
                "source_sha256": self.source_sha256}

    def encoded(self) -> bytes:
        return encode_safetensors({"caption": self.caption, "caption_mask": self.mask},
                                  {"source_sha256": self.source_sha256})


def load_captions(path: str | Path) -> Captions:
    """Read a caption feature file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"caption file not found: {path}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    elif path.suffix == ".safetensors":
        from safetensors.torch import load_file

        arrays = {k: (v.float() if v.dtype == torch.bfloat16 else v).numpy()
                  for k, v in load_file(str(path)).items()}
    else:
        raise DataFileError(f"{path}: caption file must be .npz or .safetensors")
    missing = {"caption", "caption_mask"} - set(arrays)
    if missing:
        raise DataFileError(f"{path}: missing arrays {sorted(missing)}; found {sorted(arrays)}")
    cap = arrays["caption"]
    if cap.dtype not in (np.float16, np.float32):
        cap = cap.astype(np.float32)
    return Captions(cap, arrays["caption_mask"].astype(np.bool_), sha256_file(path))


# ------------------------------------------------------------------------------ from prompts


def prompts_metadata(prompts: list[str], encoder: EncoderSpec) -> dict[str, str]:
    """What a caption file made from prompts records, under one key `text_encoder` (a JSON
    object with sorted keys: safetensors orders several metadata keys at random, one key keeps
    the bytes, hence the checksum, reproducible): the encoder (no local paths), the number of
    prompts and the sha256 of their lines joined by newlines (UTF-8)."""
    info = {**encoder.metadata(), "prompts": len(prompts),
            "prompts_sha256": sha256_bytes("\n".join(prompts).encode("utf-8"))}
    return {"text_encoder": json.dumps(info, sort_keys=True)}


def caption_file_bytes(caption: np.ndarray, mask: np.ndarray, metadata: dict[str, str]
                       ) -> bytes:
    """The .safetensors bytes of a caption file (caption, caption_mask, metadata)."""
    return encode_safetensors({"caption": np.asarray(caption, dtype=np.float32),
                               "caption_mask": np.asarray(mask, dtype=np.bool_)}, metadata)


def captions_from_prompts(prompts_file: str | Path, encoder: EncoderSpec) -> Captions:
    """The prompts of `prompts_file` (one a line, `text.read_prompts`) encoded in memory;
    source_sha256 = the sha256 of the .safetensors file `encode_captions_file` would write."""
    prompts = read_prompts(prompts_file)
    cap, mask = encode_prompts(prompts, encoder)
    data = caption_file_bytes(cap, mask, prompts_metadata(prompts, encoder))
    return Captions(cap, mask, sha256_bytes(data), prompts)


def default_encoder(teacher_name: str, encoder: EncoderSpec | None) -> EncoderSpec | None:
    """`encoder`, or the text encoder an embedded text-conditional preset was trained with
    (its `extra["encoder"]`, `extra["max_length"]`; `mnist-t2i`: minilm, 16 slots)."""
    if encoder is not None:
        return encoder
    from ardistill.teachers.registry import all_presets

    preset = all_presets().get(teacher_name)
    if preset is None or "encoder" not in preset.extra:
        return None
    return EncoderSpec.parse(preset.extra["encoder"], max_length=preset.extra["max_length"])


def encode_captions_file(prompts_file: str | Path, encoder: EncoderSpec, out: str | Path
                         ) -> Captions:
    """`ardistill encode-captions`: encode the prompts of `prompts_file` and write the caption
    file `out` (.safetensors with the encoder's metadata, or .npz), atomically; returns the
    captions as `load_captions(out)` would read them."""
    out = Path(out)
    if out.suffix not in SUFFIXES:
        raise ValueError(f"--out {out}: a caption file is .npz or .safetensors")
    prompts = read_prompts(prompts_file)
    cap, mask = encode_prompts(prompts, encoder)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".safetensors":
        data = caption_file_bytes(cap, mask, prompts_metadata(prompts, encoder))
        atomic_write_bytes(out, data)
        return Captions(cap, mask, sha256_bytes(data))
    atomic_write_with(out, lambda f: np.savez(f, caption=cap, caption_mask=mask))
    return Captions(cap, mask, sha256_file(out))


def caption_source(captions: str | Path | None = None, prompts: str | Path | None = None,
                   encoder: EncoderSpec | None = None) -> Captions | None:
    """The caption features of a command: a caption file (`--captions`), prompts encoded here
    (`--prompts` + `--encoder`), or None when neither is given."""
    if captions is not None and prompts is not None:
        raise ValueError("--captions and --prompts exclude each other: give caption features "
                         "or prompts to encode, not both")
    if prompts is not None:
        if encoder is None:
            raise ValueError("--prompts needs --encoder t5:PATH or --encoder minilm (only an "
                             "embedded text-conditional teacher, mnist-t2i, knows its own)")
        return captions_from_prompts(prompts, encoder)
    if encoder is not None:
        raise ValueError("--encoder applies with --prompts FILE only")
    return load_captions(captions) if captions is not None else None
