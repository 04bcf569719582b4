"""The two training stages of an embedded teacher, for any family (`zoo/families.py`).

1. `train_tokenizer`: VQ tokenizer on images, loss = L1 + L2 pixel reconstruction + the
   quantiser's codebook and commitment terms (straight-through estimator).
2. `tokenize` the train images with the frozen tokenizer, then `train_ar`: cross-entropy of
   the teacher-forced logits, labels dropped to the null class at the config's rate (what
   classifier-free guidance needs at sampling time), EMA of the weights.

Determinism: every draw (init, batches, shifts, label dropout) comes from one seeded
`torch.Generator`. The official modules' dropout layers draw from torch's global generator;
`train_ar` runs them inside `torch.random.fork_rng` seeded from the recipe seed, so the run is
reproducible and the caller's global RNG state is left as it was. Same seed + same thread
count + same CPU kernels -> bit-identical weights.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ardistill.zoo.families import FamilyOps
from ardistill.zoo.recipes import ARRecipe, TokenizerRecipe


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def translate(images: Tensor, dy: int, dx: int) -> Tensor:
    """Shift (N, C, H, W) images by dy rows and dx columns, filling with black (-1)."""
    if dy == 0 and dx == 0:
        return images
    n, c, h, w = images.shape
    out = torch.full_like(images, -1.0)
    out[:, :, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        :, :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def random_translate(images: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Each image shifted by its own (dy, dx) uniform in [-max_shift, max_shift]^2."""
    if max_shift == 0:
        return images
    offs = torch.randint(-max_shift, max_shift + 1, (images.shape[0], 2), generator=generator)
    return torch.stack([translate(x[None], int(dy), int(dx))[0]
                        for x, (dy, dx) in zip(images, offs.tolist())])


def batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Endless index batches: a fresh permutation every epoch; the last short batch of an
    epoch is dropped (when the epoch has at least one full batch)."""
    size = min(batch_size, n)
    while True:
        perm = torch.randperm(n, generator=generator)
        for s in range(0, n - size + 1, size):
            yield perm[s : s + size]


class CaptionTable:
    """Caption features of a text-conditional teacher's training images: `per_image` captions
    of every image, row i * per_image + k the k-th caption of image i.

    features: (R, T, D) float (stored float16 to save memory; cast per batch), mask: (R, T) bool
    (left-padded, `ardistill.text.layout`). With a table, the "labels" of `train_ar` and
    `token_nll` are image ids.
    """

    def __init__(self, features: Tensor, mask: Tensor, per_image: int) -> None:
        if features.shape[0] != mask.shape[0] or features.shape[0] % per_image:
            raise ValueError(f"caption table: {features.shape[0]} feature rows, "
                             f"{mask.shape[0]} mask rows, {per_image} captions per image")
        self.features, self.mask, self.per_image = features, mask.bool(), per_image

    def draw(self, images: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Captions of `images` (B,) image ids: a random one of each image's captions (the
        first with generator=None). Returns (features (B, T, D) float32, mask (B, T))."""
        k = (torch.zeros_like(images) if generator is None else
             torch.randint(0, self.per_image, images.shape, generator=generator))
        rows = images * self.per_image + k
        return self.features[rows].float(), self.mask[rows]


class EMA:
    """Exponential moving average of a module's parameters; buffers are copied (they are
    constants or statistics: averaging VAR's -inf attention mask would give NaN).

    decay ramps as min(decay, (1 + step) / (10 + step)) so early weights fade quickly.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for avg, p in zip(self.module.parameters(), module.parameters()):
            avg.lerp_(p.detach(), 1.0 - d)
        for avg, b in zip(self.module.buffers(), module.buffers()):
            avg.copy_(b)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled)


def train_tokenizer(
    ops: FamilyOps,
    cfg,
    recipe: TokenizerRecipe,
    images: Tensor,
    *,
    seed: int,
    progress: bool = True,
) -> tuple[nn.Module, dict]:
    """Train a tokenizer of config `cfg` on images (N, 3, H, W) float32 in [-1, 1].

    returns: (tokenizer in eval mode, record: seconds and final mean losses).
    """
    recipe.validate()
    g = torch.Generator().manual_seed(seed)
    tok = ops.new_tokenizer(cfg, g)
    opt = torch.optim.AdamW(tok.parameters(), lr=recipe.lr, betas=(0.9, 0.95),
                            weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, recipe.steps, recipe.warmup))
    window: dict[str, list[float]] = {"l1": [], "l2": [], "vq": [], "loss": []}
    t0 = time.perf_counter()
    bar = _progress(recipe.steps, "train tokenizer", progress)
    for step, idx in zip(range(recipe.steps), batches(len(images), recipe.batch_size, g)):
        x = random_translate(images[idx], recipe.max_shift, g)
        recon, vq_loss = ops.tokenizer_forward(tok, x)
        l1, l2 = (recon - x).abs().mean(), (recon - x).pow(2).mean()
        loss = recipe.l1_weight * l1 + recipe.l2_weight * l2 + vq_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        for k, v in (("l1", l1), ("l2", l2), ("vq", vq_loss), ("loss", loss)):
            window[k] = (window[k] + [v.item()])[-50:]
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}", l2=f"{l2.item():.4f}")
    bar.close()
    record = {"seconds": round(time.perf_counter() - t0, 1),
              "final_losses_last50": {k: sum(v) / len(v) for k, v in window.items()}}
    return tok.eval().requires_grad_(False), record


@torch.no_grad()
def tokenize(
    ops: FamilyOps,
    tok: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    shifts: int = 0,
    batch_size: int = 250,
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Tokens of every image at every translation in [-shifts, shifts]^2.

    images: (N, 3, H, W) float32; labels: (N,) int64.
    returns: tokens (N * (2 shifts + 1)^2, L) int64, labels of the same length (shift-major).
    """
    offsets = [(dy, dx) for dy in range(-shifts, shifts + 1) for dx in range(-shifts, shifts + 1)]
    toks = []
    bar = _progress(len(offsets) * math.ceil(len(images) / batch_size), "tokenize", progress)
    for dy, dx in offsets:
        for s in range(0, len(images), batch_size):
            toks.append(ops.encode(tok, translate(images[s : s + batch_size], dy, dx)))
            bar.update(1)
    bar.close()
    return torch.cat(toks), labels.repeat(len(offsets))


def token_nll(ops: FamilyOps, ar: nn.Module, tok: nn.Module, tokens: Tensor, labels: Tensor,
              batch_size: int = 250, captions: CaptionTable | None = None) -> float:
    """Mean conditional negative log-likelihood (nats per token) of (N, L) tokens (with
    `captions`: labels are image ids, each conditioned on its first caption)."""
    total, count = 0.0, 0
    was_training = ar.training
    ar.eval()
    with torch.no_grad():
        for s in range(0, len(tokens), batch_size):
            t, lab = tokens[s : s + batch_size], labels[s : s + batch_size]
            cond, cmask = (lab, None) if captions is None else captions.draw(lab, None)
            logits = ops.ar_logits(ar, tok, t, cond, torch.zeros_like(lab, dtype=torch.bool),
                                   cmask)
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t.reshape(-1),
                                           reduction="sum"))
            count += t.numel()
    ar.train(was_training)
    return total / count


def train_ar(
    ops: FamilyOps,
    cfg,
    recipe: ARRecipe,
    tok: nn.Module,
    tokens: Tensor,
    labels: Tensor,
    *,
    seed: int,
    val: tuple[Tensor, Tensor] | None = None,
    eval_every: int = 500,
    progress: bool = True,
    captions: CaptionTable | None = None,
    val_captions: CaptionTable | None = None,
) -> tuple[nn.Module, dict]:
    """Train the AR model of config `cfg` on (N, L) int64 tokens of the frozen tokenizer `tok`
    with (N,) int64 labels (with `captions`, a text-conditional model: labels are image ids
    and each step conditions a sequence on one of its image's captions, drawn at random;
    `val_captions` the same for the validation images).

    val: (tokens, labels) whose NLL (EMA weights) is recorded every `eval_every` steps.
    returns: (EMA model in eval mode, record: seconds, losses, validation curve).
    """
    recipe.validate()
    g = torch.Generator().manual_seed(seed)
    model = ops.new_ar(cfg, g)
    ema = EMA(model, recipe.ema_decay)
    p_drop = ops.class_dropout(cfg)
    decay, no_decay = _decay_groups(model)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=recipe.lr, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, recipe.steps, recipe.warmup))
    curve, window = [], []
    t0 = time.perf_counter()
    bar = _progress(recipe.steps, "train AR", progress)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)  # the modules' dropout layers (see module docstring)
        for step, idx in zip(range(recipe.steps), batches(len(tokens), recipe.batch_size, g)):
            t, lab = tokens[idx], labels[idx]
            cond, cmask = (lab, None) if captions is None else captions.draw(lab, g)
            drop = torch.rand(len(idx), generator=g) < p_drop
            logits = ops.ar_logits(model, tok, t, cond, drop, cmask)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            ema.update(model, step)
            window = (window + [loss.item()])[-50:]
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
            if val is not None and ((step + 1) % eval_every == 0 or step + 1 == recipe.steps):
                curve.append({"step": step + 1, "train_loss_last50": sum(window) / len(window),
                              "val_nll": token_nll(ops, ema.module, tok, *val,
                                                   captions=val_captions)})
                bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{curve[-1]['val_nll']:.3f}")
    bar.close()
    record = {"seconds": round(time.perf_counter() - t0, 1),
              "final_loss_last50": sum(window) / len(window), "curve": curve}
    return ema.module.eval(), record


def _decay_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Matrices decay; vectors (norm gains, biases) do not (the usual GPT recipe)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return decay, no_decay
