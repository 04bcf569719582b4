"""What a DD training run is: typed configs and named recipes (docs/training.md).

    cfg = recipe("tiny-1step", pairs="pairs/", out="run/")   # a named recipe, fields overridden
    result = train(cfg)                                       # ardistill.training.loop

A recipe is a Python function returning a `TrainConfig`; `recipe(name, **overrides)` applies
field overrides with `dataclasses.replace`. Timesteps and the split are in AR steps (tokens for
LlamaGen, scales for VAR); `None` takes the teacher preset's released `DDDefaults`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

PERCEPTUAL = ("none", "pixel-l1", "pixel-l2", "mnist", "lpips")
SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class LossConfig:
    """Loss weights (method.md §5). Positions >= begin(t) only (the generated ones).

    ce: cross-entropy of the logits head against the target tokens, on every generated
        position (the logits head decides positions < split at sampling and snaps the
        intermediate tokens of multi-step sampling, so it learns the whole sequence);
    latent: MSE of the continuous head to the target codebook vectors, on generated positions
        >= begin(split) only (sampling reads the continuous head there and nowhere else);
    perceptual: loss on images decoded from (target vectors before split, continuous head
        after): "none", "pixel-l1" / "pixel-l2" (decoded pixels vs the target tokens' image),
        "mnist" (features of the shipped MNIST network), "lpips" (needs `lpips_vgg` and
        `lpips_linear` weight files given locally; nothing downloads);
    perceptual_weight: its weight (0 disables the decode).
    """

    ce: float = 1.0
    latent: float = 1.0
    perceptual: str = "none"
    perceptual_weight: float = 0.0
    lpips_vgg: str | None = None
    lpips_linear: str | None = None

    def __post_init__(self) -> None:
        if self.perceptual not in PERCEPTUAL:
            raise ValueError(f"perceptual must be one of {PERCEPTUAL}, got {self.perceptual!r}")
        if min(self.ce, self.latent, self.perceptual_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        if self.perceptual == "lpips" and (self.lpips_vgg is None or self.lpips_linear is None):
            raise ValueError("perceptual='lpips' needs lpips_vgg (torchvision VGG16 state dict) "
                             "and lpips_linear (LPIPS v0.1 vgg linear layers) weight files")
        # options that cannot take effect are errors, not silent no-ops
        if self.perceptual != "none" and self.perceptual_weight == 0:
            raise ValueError(f"perceptual={self.perceptual!r} has no effect with "
                             "perceptual_weight 0: give --perceptual-weight W > 0 (or drop "
                             "--perceptual)")
        if self.perceptual == "none" and self.perceptual_weight > 0:
            raise ValueError("perceptual_weight > 0 needs a perceptual loss (--perceptual "
                             "pixel-l1 | pixel-l2 | mnist | lpips)")
        if self.perceptual != "lpips" and (self.lpips_vgg or self.lpips_linear):
            raise ValueError("lpips_vgg / lpips_linear are used only with perceptual='lpips'")

    @property
    def uses_perceptual(self) -> bool:
        return self.perceptual != "none" and self.perceptual_weight > 0


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warmup then cosine decay (to lr * min_lr_ratio) or constant."""

    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    warmup_steps: int = 0
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.lr <= 0 or self.warmup_steps < 0 or self.grad_clip < 0:
            raise ValueError("need lr > 0, warmup_steps >= 0, grad_clip >= 0")


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    pairs: the pairs dataset folder; out: the run folder (checkpoints, logs, export; an
        existing run there is resumed from its last checkpoint).
    teacher: teacher spec for `load_teacher` (None: the spec recorded in the pairs manifest);
        ignored when `train(cfg, teacher=...)` is given a teacher object; tokenizer_ckpt: the
        VQ file of official (non-embedded) presets.
    timesteps: DD timesteps sampled uniformly per example: (0,) = 1-step, (0, t2) = 2-step;
        None: (0, preset t2) when two_step else (0,).
    split: AR steps whose positions the logits head decides (None: the preset's split).
    steps: optimizer steps in total; batch_size: GLOBAL batch (split over DDP ranks).
    holdout: last samples of the dataset kept out of training for evaluation.
    eval_every / eval_samples: agreement evaluation period (0: only at the end) and size.
    ckpt_every / keep_last: checkpoint period (0: only at the end) and how many to keep.
    ema_decay: EMA of the weights (`ema_warmup`: decay min(decay, (1 + s) / (10 + s))).
    bf16: autocast to bfloat16 where the device supports it.
    device: "cpu" or "cuda" (cuda:LOCAL_RANK under torchrun).
    seed: student init, data order and timesteps all derive from it.
    fault_nan_step: test hook: the input batch of step s (1-based, as in the logs) is
        corrupted with NaN (a real bad batch; the math is untouched), to exercise the guard.
    stop_at: stop after this many completed steps (checkpoint written, no export), as if the
        run were interrupted; the same config without it resumes (time-boxed jobs, tests).
    init_student: a student file (of the pairs' teacher) whose weights start a new run instead
        of a fresh init: fine-tune a shipped 1-step student into a 2-step one, or continue a
        run under another schedule. Ignored when the run is resumed from a checkpoint.
    """

    pairs: str = ""
    out: str = ""
    teacher: str | None = None
    tokenizer_ckpt: str | None = None
    timesteps: tuple[int, ...] | None = None
    two_step: bool = False
    split: int | None = None
    steps: int = 1000
    batch_size: int = 32
    holdout: int = 256
    eval_every: int = 0
    eval_samples: int = 256
    ckpt_every: int = 0
    keep_last: int = 2
    log_every: int = 10
    ema_decay: float = 0.999
    ema_warmup: bool = True
    bf16: bool = False
    device: str = "cpu"
    seed: int = 0
    progress: bool = True
    tensorboard: bool = False
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    fault_nan_step: int | None = None
    stop_at: int | None = None
    init_student: str | None = None

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.timesteps is not None and (not self.timesteps or self.timesteps[0] != 0
                                           or list(self.timesteps) != sorted(set(self.timesteps))):
            raise ValueError(f"timesteps must be increasing and start at 0, got {self.timesteps}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda, got {self.device!r}")
        if min(self.eval_every, self.ckpt_every, self.holdout, self.keep_last - 1) < 0:
            raise ValueError("eval_every, ckpt_every, holdout must be >= 0 and keep_last >= 1")

    def replace(self, **kw) -> TrainConfig:
        return replace(self, **kw)

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> TrainConfig:
        d = dict(d)
        d["loss"] = LossConfig(**d.get("loss", {}))
        opt = dict(d.get("optim", {}))
        if "betas" in opt:
            opt["betas"] = tuple(opt["betas"])
        d["optim"] = OptimConfig(**opt)
        if d.get("timesteps") is not None:
            d["timesteps"] = tuple(d["timesteps"])
        return TrainConfig(**d)


# ------------------------------------------------------------------------------ recipes


def _tiny(two_step: bool) -> TrainConfig:
    # The demo's students: a few hundred steps on 2 CPU cores (docs/training.md).
    return TrainConfig(two_step=two_step, steps=300, batch_size=32, holdout=256,
                       eval_every=100, eval_samples=256, ckpt_every=100, ema_decay=0.99,
                       optim=OptimConfig(lr=3e-4, warmup_steps=20, schedule="cosine"))


def _debug() -> TrainConfig:
    # The golden-trace run of the tests: tiny, no EMA warmup, constant lr.
    return TrainConfig(steps=10, batch_size=8, holdout=16, eval_samples=16, ema_decay=0.9,
                       log_every=1, progress=False,
                       optim=OptimConfig(lr=1e-3, warmup_steps=2, schedule="constant"))


def _llamagen_b(two_step: bool) -> TrainConfig:
    # LlamaGen-B scale (paper: 1.2M pairs, 8 GPUs); our guess at a starting point, measured
    # nowhere yet at full size.
    return TrainConfig(two_step=two_step, steps=200_000, batch_size=256, holdout=1000,
                       eval_every=5000, eval_samples=1000, ckpt_every=5000, keep_last=3,
                       ema_decay=0.9999, bf16=True, device="cuda", log_every=50,
                       optim=OptimConfig(lr=1e-4, weight_decay=0.0, warmup_steps=2000))


def _var_d16(two_step: bool) -> TrainConfig:
    return _llamagen_b(two_step)


RECIPES: dict[str, Callable[[], TrainConfig]] = {
    "debug": _debug,
    "tiny-1step": lambda: _tiny(False),
    "tiny-2step": lambda: _tiny(True),
    "llamagen-b-1step": lambda: _llamagen_b(False),
    "llamagen-b-2step": lambda: _llamagen_b(True),
    "var-d16-1step": lambda: _var_d16(False),
    "var-d16-2step": lambda: _var_d16(True),
}


def recipe(name: str, **overrides) -> TrainConfig:
    """The named recipe with dataclass fields overridden (`recipe("tiny-1step", steps=50)`)."""
    if name not in RECIPES:
        raise KeyError(f"unknown training recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    return replace(RECIPES[name](), **overrides)
