"""VAR's multi-scale VQVAE: image <-> per-scale token indices (official `models/vqvae.py`).

State-dict keys: `encoder.*`, `decoder.*`, `quantize.*` (MultiScaleQuantizer), `quant_conv.*`,
`post_quant_conv.*`; `vae_ch160v4096z32.pth` loads into `VQVAE(VQVAEConfig())` strictly.
Images are (B, 3, H, W) float in [-1, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ardistill.teachers import fast_decoder
from ardistill.teachers.var.config import VQVAEConfig
from ardistill.teachers.var.quant import MultiScaleQuantizer, QuantizerOutput
from ardistill.teachers.var.vae_nets import Decoder, Encoder


class VQVAE(nn.Module):
    def __init__(self, cfg: VQVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        nets = dict(ch=cfg.ch, ch_mult=tuple(cfg.ch_mult), num_res_blocks=cfg.num_res_blocks,
                    dropout=cfg.dropout, in_channels=cfg.in_channels, z_channels=cfg.z_channels,
                    using_sa=cfg.using_sa, using_mid_sa=cfg.using_mid_sa)
        self.encoder = Encoder(**nets)
        self.decoder = Decoder(**nets)
        self.quantize = MultiScaleQuantizer(cfg.vocab_size, cfg.z_channels, tuple(cfg.patch_nums),
                                            cfg.beta, cfg.quant_resi, cfg.share_quant_resi)
        ks = cfg.quant_conv_ks
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, ks, 1, ks // 2)
        self.post_quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, ks, 1, ks // 2)

    @property
    def patch_nums(self) -> tuple[int, ...]:
        return self.quantize.patch_nums

    def _check_image(self, img: Tensor) -> None:
        s = self.cfg.image_size
        if img.dim() != 4 or img.shape[1] != self.cfg.in_channels or img.shape[-2:] != (s, s):
            raise ValueError(
                f"expected images (B, {self.cfg.in_channels}, {s}, {s}), got {tuple(img.shape)}"
            )

    def encode_features(self, img: Tensor) -> Tensor:
        """img: (B, 3, H, W) in [-1, 1] -> f: (B, Cvae, P, P) continuous features."""
        self._check_image(img)
        return self.quant_conv(self.encoder(img))

    def img_to_indices(self, img: Tensor) -> list[Tensor]:
        """Official `img_to_idxBl`: (B, 3, H, W) -> per-scale [(B, pn^2) int64]."""
        return self.quantize.f_to_indices(self.encode_features(img))

    def encode(self, img: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, L) int64 indices, scales concatenated (scale-major)."""
        return torch.cat(self.img_to_indices(img), dim=1)

    def fhat_to_img(self, f_hat: Tensor) -> Tensor:
        """f_hat: (B, Cvae, P, P) -> (B, 3, H, W) float32 clamped to [-1, 1] (official).
        Inference on the CPU in float32 runs the fast path (`teachers.fast_decoder`: same output
        up to float32 rounding)."""
        fast = fast_decoder.decode(self.decoder, self.post_quant_conv, f_hat)
        img = fast if fast is not None else self.decoder(self.post_quant_conv(f_hat))
        return img.clamp(-1, 1)

    def split_scales(self, tokens: Tensor) -> list[Tensor]:
        """(B, begin(k)) int64 -> [(B, pn_s^2)] for s < k; the length must end on a scale."""
        out, cur = [], 0
        for pn in self.patch_nums:
            if cur == tokens.shape[1]:
                break
            out.append(tokens[:, cur : cur + pn * pn])
            cur += pn * pn
        if cur != tokens.shape[1]:
            raise ValueError(f"{tokens.shape[1]} tokens do not end on a scale boundary of "
                             f"patch_nums {self.patch_nums}")
        return out

    def indices_to_fhat(self, tokens: Tensor) -> Tensor:
        """(B, L) int64 all scales -> final f_hat (B, Cvae, P, P) float32."""
        return self.quantize.vectors_to_fhat(self.quantize.embedding(tokens))

    def decode_indices(self, tokens: Tensor) -> Tensor:
        """(B, L) int64 -> (B, 3, H, W) in [-1, 1] (official `idxBl_to_img(same_shape=True,
        last_one=True)`)."""
        return self.fhat_to_img(self.indices_to_fhat(tokens))

    def forward(self, img: Tensor) -> tuple[Tensor, QuantizerOutput]:
        """Training: img (B, 3, H, W) -> (reconstruction (B, 3, H, W) unclamped, quantizer
        output with straight-through f_hat, indices and loss terms)."""
        q = self.quantize(self.encode_features(img))
        return self.decoder(self.post_quant_conv(q.f_hat)), q
