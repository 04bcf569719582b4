"""How the embedded teachers are trained: typed recipes, one per shipped preset.

A teacher is trained in two stages on the train split of the embedded MNIST data
(data/mnist.py): the VQ tokenizer (reconstruction + codebook + commitment losses), then the AR
model on the tokens of the frozen tokenizer (cross-entropy, label dropout to the null class for
classifier-free guidance). The network shapes live in the teacher presets
(`teachers/<family>/presets.py`); a recipe only says how to train them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class TokenizerRecipe:
    """VQ tokenizer stage: AdamW, linear warm-up then cosine decay to 0.

    l1_weight / l2_weight: weights of the pixel L1 and L2 reconstruction losses (no
        perceptual or GAN loss: at 32x32 on digits the pixel losses suffice).
    max_shift: each training image is translated by up to this many pixels (black fill).
    """

    steps: int = 1200
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: int = 50
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    max_shift: int = 1

    def validate(self) -> None:
        _positive(self, "steps", "batch_size")
        if self.lr <= 0 or self.max_shift < 0 or self.warmup < 0:
            raise ValueError(f"tokenizer recipe: lr > 0, warmup >= 0, max_shift >= 0: {self}")


@dataclass(frozen=True)
class ARRecipe:
    """AR stage: AdamW, warm-up + cosine, EMA of the weights (the EMA is what ships).

    shifts: the train images are tokenised at every translation in [-shifts, shifts]^2 pixels
        ((2 shifts + 1)^2 token sequences per image), a cheap augmentation against memorising
        4,500 digits. Label dropout uses the model config's own rate (the null class row).
    """

    steps: int = 3000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 100
    ema_decay: float = 0.998
    shifts: int = 1

    def validate(self) -> None:
        _positive(self, "steps", "batch_size")
        if self.lr <= 0 or self.shifts < 0 or not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"AR recipe: lr > 0, shifts >= 0, 0 <= ema_decay < 1: {self}")


@dataclass(frozen=True)
class TeacherRecipe:
    """Both stages of one embedded teacher.

    limit: train on the first `limit` train images only (quick checks; None = all 4,500).
    eval_samples: teacher samples drawn for the quality record (uniform over the classes).
    """

    preset: str
    seed: int = 0
    tokenizer: TokenizerRecipe = field(default_factory=TokenizerRecipe)
    ar: ARRecipe = field(default_factory=ARRecipe)
    limit: int | None = None
    eval_samples: int = 2000
    captions_per_image: int = 4  # text-conditional presets: captions written per train image

    def validate(self) -> None:
        self.tokenizer.validate()
        self.ar.validate()
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if not 1 <= self.captions_per_image <= 10:
            raise ValueError(f"captions_per_image must be in 1..10, got {self.captions_per_image}")
        if self.eval_samples < 10:
            raise ValueError(f"eval_samples must be >= 10, got {self.eval_samples}")

    def replace(self, **kw) -> TeacherRecipe:
        return replace(self, **kw)


def _positive(obj, *names: str) -> None:
    for n in names:
        if getattr(obj, n) < 1:
            raise ValueError(f"{type(obj).__name__}.{n} must be >= 1, got {getattr(obj, n)}")


# The recipes of the shipped teachers (docs/zoo.md records what they produced).
# AR stages run 1,500 steps (the 3,000 of the defaults did not fit a CPU session: the
# validation NLL had flattened by then, docs/zoo.md); mnist-var's tokenizer 600 steps.
RECIPES: dict[str, TeacherRecipe] = {
    "mnist-llamagen": TeacherRecipe("mnist-llamagen", ar=ARRecipe(steps=1500)),
    "mnist-var": TeacherRecipe("mnist-var", tokenizer=TokenizerRecipe(steps=600),
                               ar=ARRecipe(steps=1500)),
    # mnist-t2i shares mnist-llamagen's tokenizer (no tokenizer stage); reading a digit from a
    # caption is harder than from a class token: 2,000 AR steps.
    "mnist-t2i": TeacherRecipe("mnist-t2i", ar=ARRecipe(steps=2000)),
}


def teacher_recipe(preset: str) -> TeacherRecipe:
    if preset not in RECIPES:
        raise KeyError(f"no training recipe for teacher preset {preset!r}; "
                       f"recipes exist for: {', '.join(sorted(RECIPES))}")
    return RECIPES[preset]
