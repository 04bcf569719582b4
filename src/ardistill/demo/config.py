"""What a demo run is: `DemoConfig` (every stage's size is a field) and its two presets.

    DemoConfig.full()    # the README's table: <= 15 minutes on a 2-core CPU, both teachers
    DemoConfig.quick()   # CI: <= 3 minutes, same stages, fewer pairs / steps / samples

Sizes are per teacher. The evaluation set is a second pairs dataset (seed `seed + 1`), so
every method is sampled from noise and labels no student saw in training, and the teacher's
flow-mapped tokens for that same noise are the token-agreement reference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

DEFAULT_TEACHERS = ("mnist-llamagen", "mnist-var")
CHOICES = ("multinomial", "flow")
SPLITS = ("logits", "preset")


@dataclass(frozen=True)
class StudentSettings:
    """One student's training run (passed to `ardistill.training`; docs/training.md).

    steps / batch_size / lr / warmup / ema_decay: AdamW with warm-up then cosine, EMA kept
    for sampling; ce / latent: loss weights of the logits head (cross-entropy) and of the
    continuous head (MSE to the target codebook vectors); perceptual / perceptual_weight:
    the training room's optional decoded-image loss ("none", "pixel-l1", "pixel-l2",
    "mnist")."""

    steps: int
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 20
    ema_decay: float = 0.99
    ce: float = 1.0
    latent: float = 1.0
    perceptual: str = "none"
    perceptual_weight: float = 0.0

    def validate(self, what: str) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"{what}: steps and batch_size must be >= 1, got {self}")
        if self.lr <= 0 or self.warmup < 0 or not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"{what}: need lr > 0, warmup >= 0, 0 <= ema_decay < 1: {self}")
        if min(self.ce, self.latent, self.perceptual_weight) < 0 or self.ce + self.latent <= 0:
            raise ValueError(f"{what}: loss weights must be >= 0 and not all 0: {self}")


@dataclass(frozen=True)
class DemoConfig:
    """One demo run.

    preset: the preset this config came from ("full", "quick", or "custom").
    teachers: shipped teacher presets to run, in order.
    out: output folder (report.md, report.json, grids/, and per-teacher work folders).
    seed: pairs seed of the training set; the evaluation set uses seed + 1.
    threads: torch intra-op threads for the whole run (1 is fastest on a busy 2-core box).
    pairs: training pairs per teacher; eval_samples: samples per method (every method the
        same count: FID with few samples is biased, so only equal counts compare).
    one_step / two_step: the two students' training (t in {0} and {0, t2}, t2 and the split
        from the teacher preset's DDDefaults).
    skip: (family, k) pairs: the skip-k baseline of each family (k AR steps skipped).
    split: which head decides which positions at DD sampling (method.md §6): "logits" =
        `codebook[argmax logits]` at every position (split = the teacher's step count), or
        "preset" = the released rule (logits before the preset's DDDefaults split, the
        continuous head after). Training is the same either way. At this CPU budget the
        continuous head is still a blurred mean of the possible latents, and "logits" gave
        much better FID for both teachers (docs/demo.md, "The split").
    choice: how baselines turn a distribution into a token ("multinomial" as the paper, or
        "flow": the flow map of the same noise, deterministic).
    sample_batch: batch size of sampling and evaluation.
    text_to_image: also sample the shipped text-to-image teacher `mnist-t2i` and its shipped
        students on `eval_samples` prompts (`demo.text`; skipped with a note when the `text`
        extra is not installed).
    bench_warmup / bench_repeats: time per image at batch 1, median of repeats after warm-up.
    grid_per_class: images per class row of the PNG grids (10 rows, one per class).
    progress: tqdm bars.
    """

    preset: str = "custom"
    teachers: tuple[str, ...] = DEFAULT_TEACHERS
    out: str = "demo_out"
    seed: int = 0
    threads: int = 1
    pairs: int = 1536
    eval_samples: int = 300
    one_step: StudentSettings = field(default_factory=lambda: StudentSettings(steps=300))
    two_step: StudentSettings = field(default_factory=lambda: StudentSettings(steps=450))
    skip: tuple[tuple[str, int], ...] = (("llamagen", 26), ("var", 1))
    split: str = "logits"
    choice: str = "multinomial"
    sample_batch: int = 250
    bench_warmup: int = 2
    bench_repeats: int = 7
    grid_per_class: int = 8
    text_to_image: bool = True  # the shipped mnist-t2i teacher and students on prompts
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not self.teachers or len(set(self.teachers)) != len(self.teachers):
            raise ValueError(f"teachers must be a non-empty list without repeats, got "
                             f"{self.teachers}")
        if not self.out:
            raise ValueError("out (the output folder) must not be empty")
        if not 0 <= self.seed < 2**62:
            raise ValueError(f"seed must be in [0, 2**62), got {self.seed}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.pairs < 16 or self.eval_samples < 10:
            raise ValueError(f"need pairs >= 16 and eval_samples >= 10 (FID needs a few "
                             f"samples), got pairs={self.pairs}, eval_samples={self.eval_samples}")
        self.one_step.validate("one_step")
        self.two_step.validate("two_step")
        for fam, k in self.skip:
            if fam not in ("llamagen", "var") or k < 1:
                raise ValueError(f"skip entries are (family llamagen|var, k >= 1), got "
                                 f"({fam!r}, {k})")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.choice not in CHOICES:
            raise ValueError(f"choice must be one of {CHOICES}, got {self.choice!r}")
        if self.sample_batch < 1 or self.bench_repeats < 1 or self.bench_warmup < 0:
            raise ValueError("sample_batch and bench_repeats must be >= 1, bench_warmup >= 0")
        if self.grid_per_class < 1:
            raise ValueError(f"grid_per_class must be >= 1, got {self.grid_per_class}")

    def skip_k(self, family: str) -> int:
        """k of the skip-k baseline for a teacher family."""
        for fam, k in self.skip:
            if fam == family:
                return k
        raise ValueError(f"no skip-k setting for family {family!r} (config.skip)")

    def replace(self, **kw) -> DemoConfig:
        return replace(self, **kw)

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def full() -> DemoConfig:
        """The README's demo: both teachers within 15 minutes on this 2-core CPU."""
        return DemoConfig(preset="full")

    @staticmethod
    def quick() -> DemoConfig:
        """CI: the same stages at small sizes, within 3 minutes."""
        return DemoConfig(
            preset="quick", pairs=192, eval_samples=64,
            one_step=StudentSettings(steps=40, batch_size=32, warmup=5, ema_decay=0.9),
            two_step=StudentSettings(steps=40, batch_size=32, warmup=5, ema_decay=0.9),
            sample_batch=64, bench_warmup=1, bench_repeats=3, grid_per_class=4)


PRESETS = {"full": DemoConfig.full, "quick": DemoConfig.quick}
