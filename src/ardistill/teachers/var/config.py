"""Configs of the VAR teacher (next-scale prediction) and its multi-scale VQVAE.

Field names follow our code; `from_official_build_args` maps the official
`models.build_vae_var(...)` arguments (patch_nums, V, Cvae, ch, share_quant_resi, depth, ...)
onto them, so any official configuration (and the oracle pack's tiny ones) builds from data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The released VAR models (and their VQVAE) all use these ten scales: 680 tokens.
RELEASED_PATCH_NUMS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)


@dataclass(frozen=True)
class VQVAEConfig:
    """The multi-scale VQVAE (`vae_ch160v4096z32.pth` is the default).

    ch, ch_mult, num_res_blocks, using_sa, using_mid_sa: encoder / decoder shape (the official
        VQVAE hard-codes ch_mult (1, 1, 2, 2, 4); the oracle pack's reduced model overrides it).
    z_channels: Cvae, the codebook dimension. vocab_size: V.
    share_quant_resi: number of shared Phi convolutions (>= 2: partially shared, as released).
    quant_resi: Phi(h) = (1 - quant_resi) h + quant_resi conv3x3(h).
    beta: commitment loss weight (training only).
    """

    vocab_size: int = 4096
    z_channels: int = 32
    ch: int = 160
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    dropout: float = 0.0
    using_sa: bool = True
    using_mid_sa: bool = True
    in_channels: int = 3
    beta: float = 0.25
    quant_resi: float = 0.5
    share_quant_resi: int = 4
    quant_conv_ks: int = 3
    patch_nums: tuple[int, ...] = RELEASED_PATCH_NUMS

    def __post_init__(self) -> None:
        if self.share_quant_resi < 2:
            raise ValueError(
                f"share_quant_resi={self.share_quant_resi}: only the partially shared Phi "
                "(share_quant_resi >= 2, released value 4) is supported"
            )
        if not 0.0 < abs(self.quant_resi) <= 1.0:
            raise ValueError(f"quant_resi must be in (0, 1], got {self.quant_resi}")
        if list(self.patch_nums) != sorted(set(self.patch_nums)):
            raise ValueError(f"patch_nums must increase strictly, got {self.patch_nums}")
        for c in (self.ch * m for m in (1, *self.ch_mult)):
            if c % 32:
                raise ValueError(f"VQVAE channels must be multiples of 32 (GroupNorm), got {c}")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def image_size(self) -> int:
        return self.patch_nums[-1] * self.downsample


@dataclass(frozen=True)
class VARConfig:
    """The VAR transformer. Width = 64 * depth and heads = depth unless given (official rule).

    cond_drop_rate is NOT applied inside `forward` (that would need a global RNG); training
    loops drop labels themselves (`ardistill.teachers.var.model.drop_labels`).
    """

    depth: int = 16
    embed_dim: int = 0  # 0: 64 * depth
    num_heads: int = 0  # 0: depth
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    vocab_size: int = 4096
    cvae: int = 32
    patch_nums: tuple[int, ...] = RELEASED_PATCH_NUMS
    norm_eps: float = 1e-6
    cond_drop_rate: float = 0.1

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"embed_dim {self.width} not divisible by num_heads {self.heads}")
        if list(self.patch_nums) != sorted(set(self.patch_nums)) or self.patch_nums[0] < 1:
            raise ValueError(f"patch_nums must increase strictly from >= 1, got {self.patch_nums}")

    @property
    def width(self) -> int:
        return self.embed_dim or 64 * self.depth

    @property
    def heads(self) -> int:
        return self.num_heads or self.depth

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    @property
    def seq_len(self) -> int:
        return sum(p * p for p in self.patch_nums)

    @property
    def first_l(self) -> int:
        return self.patch_nums[0] ** 2

    @property
    def begin_ends(self) -> tuple[tuple[int, int], ...]:
        out, cur = [], 0
        for p in self.patch_nums:
            out.append((cur, cur + p * p))
            cur += p * p
        return tuple(out)


def from_official_build_args(
    args: Mapping[str, Any], vae_override: Mapping[str, Any] | None = None
) -> tuple[VARConfig, VQVAEConfig]:
    """Configs from the keyword arguments of the official `models.build_vae_var`.

    args: {"patch_nums", "V", "Cvae", "ch", "share_quant_resi", "num_classes", "depth", ...};
        `shared_aln` must be False and `attn_l2_norm` True (as released).
    vae_override: encoder/decoder fields replacing the hard-coded ones
        ({"ch", "ch_mult", "num_res_blocks", "dropout", "using_sa", "using_mid_sa"}).
    """
    if args.get("shared_aln", False):
        raise ValueError("shared_aln=True is not supported (every released VAR uses False)")
    if not args.get("attn_l2_norm", True):
        raise ValueError("attn_l2_norm=False is not supported (every released VAR uses True)")
    pn = tuple(int(p) for p in args.get("patch_nums", RELEASED_PATCH_NUMS))
    vae_kw: dict[str, Any] = dict(
        vocab_size=int(args.get("V", 4096)),
        z_channels=int(args.get("Cvae", 32)),
        ch=int(args.get("ch", 160)),
        share_quant_resi=int(args.get("share_quant_resi", 4)),
        patch_nums=pn,
    )
    for k, v in (vae_override or {}).items():
        vae_kw[k] = tuple(v) if isinstance(v, list) else v
    var = VARConfig(
        depth=int(args.get("depth", 16)),
        num_classes=int(args.get("num_classes", 1000)),
        vocab_size=vae_kw["vocab_size"],
        cvae=vae_kw["z_channels"],
        patch_nums=pn,
    )
    return var, VQVAEConfig(**vae_kw)
