"""Typed configs of the LlamaGen GPT and its VQ tokenizer, with the official named sizes.

Field names follow the official `ModelArgs` (autoregressive/models/gpt.py and
tokenizer/tokenizer_image/vq_model.py) so an official config dict maps one to one
(`GPTConfig.from_official`, `VQConfig.from_official`). Everything shape-related is derived here,
in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

# Official GPT sizes (gpt.py GPT_models): name -> (n_layer, n_head, dim).
GPT_SIZES: dict[str, tuple[int, int, int]] = {
    "B": (12, 12, 768),
    "L": (24, 16, 1024),
    "XL": (36, 20, 1280),
    "XXL": (48, 24, 1536),
    "XXXL": (48, 40, 2560),
    "1B": (22, 32, 2048),
    "3B": (24, 32, 3200),
    "7B": (32, 32, 4096),
}

# Official-config fields that only size runtime buffers or the init, not the weights.
_IGNORED_OFFICIAL = {"max_batch_size", "max_seq_len", "initializer_range"}


def find_multiple(n: int, k: int) -> int:
    return n if n % k == 0 else n + k - (n % k)


@dataclass(frozen=True)
class GPTConfig:
    """LlamaGen GPT (`Transformer`). Defaults are the official `ModelArgs` defaults.

    model_type: "c2i" (class label, 1 condition token) or "t2i" (caption features,
        `cls_token_num` condition tokens).
    caption_token_num: rows of the t2i null caption (`uncond_embedding`); the official
        `Transformer` never forwards `cls_token_num` to it, so it is 120 in every checkpoint.
    """

    dim: int = 4096
    n_layer: int = 32
    n_head: int = 32
    n_kv_head: int | None = None
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    token_dropout_p: float = 0.1
    attn_dropout_p: float = 0.0
    resid_dropout_p: float = 0.1
    ffn_dropout_p: float = 0.1
    drop_path_rate: float = 0.0
    num_classes: int = 1000
    caption_dim: int = 2048
    class_dropout_prob: float = 0.1
    model_type: str = "c2i"
    vocab_size: int = 16384
    cls_token_num: int = 1
    block_size: int = 256
    caption_token_num: int = 120

    def __post_init__(self) -> None:
        if self.model_type not in ("c2i", "t2i"):
            raise ValueError(f"model_type must be 'c2i' or 't2i', got {self.model_type!r}")
        if self.dim % self.n_head:
            raise ValueError(f"dim={self.dim} is not divisible by n_head={self.n_head}")
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_head={self.n_head} is not a multiple of n_kv_head={self.kv_heads}")
        if self.grid * self.grid != self.block_size:
            raise ValueError(f"block_size={self.block_size} must be a square (2-D RoPE grid)")
        if self.head_dim % 4:
            raise ValueError(f"head_dim={self.head_dim} must be divisible by 4 (2-D RoPE)")
        if self.model_type == "c2i" and self.cls_token_num != 1:
            raise ValueError("class-conditional LlamaGen uses exactly one condition token")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head if self.n_kv_head is not None else self.n_head

    @property
    def ffn_hidden(self) -> int:
        hidden = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return find_multiple(hidden, self.multiple_of)

    @property
    def grid(self) -> int:
        return math.isqrt(self.block_size)

    @property
    def num_cond_rows(self) -> int:
        """Rows of the class table: the null class is there iff label dropout is trained."""
        return self.num_classes + int(self.class_dropout_prob > 0)

    @staticmethod
    def from_official(args: dict) -> GPTConfig:
        """Build from an official `ModelArgs` dict (unknown fields are an error)."""
        return _from_official(GPTConfig, args)

    def replace(self, **kw) -> GPTConfig:
        return replace(self, **kw)


def gpt_config(size: str, **kw) -> GPTConfig:
    """An official size ("B", "L", ..., "7B") with overrides (vocab_size, model_type, ...)."""
    if size not in GPT_SIZES:
        raise ValueError(f"unknown LlamaGen GPT size {size!r}; known: {', '.join(GPT_SIZES)}")
    n_layer, n_head, dim = GPT_SIZES[size]
    return GPTConfig(n_layer=n_layer, n_head=n_head, dim=dim, **kw)


@dataclass(frozen=True)
class VQConfig:
    """LlamaGen VQ tokenizer (`VQModel`). Defaults are VQ-16 (16384 x 8, downsample 16).

    ch / num_res_blocks / norm_type: Encoder/Decoder settings the official `VQModel` does not
    expose (ch=128 there); the oracle pack's tiny tokenizer uses ch=32 (oracle README §4.3).
    """

    codebook_size: int = 16384
    codebook_embed_dim: int = 8
    codebook_l2_norm: bool = True
    codebook_show_usage: bool = True
    commit_loss_beta: float = 0.25
    entropy_loss_ratio: float = 0.0
    encoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    decoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    z_channels: int = 256
    dropout_p: float = 0.0
    ch: int = 128
    num_res_blocks: int = 2
    norm_type: str = "group"
    in_channels: int = 3
    out_channels: int = 3
    usage_buffer_size: int = 65536  # `quantize.codebook_used` length in official checkpoints

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoder_ch_mult", tuple(self.encoder_ch_mult))
        object.__setattr__(self, "decoder_ch_mult", tuple(self.decoder_ch_mult))
        if self.norm_type != "group":
            raise ValueError("only norm_type='group' is supported (SyncBatchNorm needs DDP)")
        if len(self.encoder_ch_mult) != len(self.decoder_ch_mult):
            raise ValueError("encoder and decoder must have the same number of levels")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.encoder_ch_mult) - 1)

    @staticmethod
    def from_official(args: dict, override: dict | None = None) -> VQConfig:
        """Official `ModelArgs` dict plus the Encoder/Decoder override (`ch`, `dropout`, ...)."""
        merged = dict(args)
        for k, v in (override or {}).items():
            merged["dropout_p" if k == "dropout" else k] = v
        return _from_official(VQConfig, merged)

    def replace(self, **kw) -> VQConfig:
        return replace(self, **kw)


def _from_official(cls, args: dict):
    names = {f.name for f in fields(cls)}
    unknown = set(args) - names - _IGNORED_OFFICIAL
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown official config fields {sorted(unknown)}")
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items() if k in names}
    return cls(**kw)
