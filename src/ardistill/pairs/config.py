"""What a pairs dataset is: its settings, and the identity recorded in `config.json`.

`PairsSettings` are the choices that change the content of a dataset (besides the teacher);
`GenOptions` only change how it is computed (batch size, device, progress), never what. The
identity (`dataset_identity`) is a JSON object written when a dataset is started, compared on
every resume (`identity_diff`, a clear error when anything differs) and copied into the final
manifest.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict, dataclass

import torch

from ardistill.core.pairs_format import FORMAT, FORMAT_VERSION
from ardistill.core.seeds import check_seed
from ardistill.teachers.base import SamplingConfig, Teacher
from ardistill.utils import dtypes

# Fields of the identity that describe, but do not define, the dataset (not compared).
INFORMATIONAL = {("teacher", "spec")}


@dataclass(frozen=True)
class PairsSettings:
    """The settings a dataset's content depends on (with the teacher and its sampling).

    num: samples; seed: dataset seed (pairs/seeds.py); shard_size: samples per shard file;
    micro_batch: samples per teacher forward pass -- every pass runs exactly this many samples,
        samples [j*m, (j+1)*m) together, so results do not depend on the batch size
        (docs/pairs.md, "Batch invariance"); shard_size must be a multiple of it;
    threads: CPU threads of intra-op parallelism during generation (CPU float results depend
        on the thread count); dtype: teacher compute dtype (`utils.dtypes` name, recorded
        in its long spelling, e.g. "float32");
    flow_steps: the flow solver's main-grid steps (None: its default);
    classes: class subset labels are drawn from (None: all; class-conditional teachers);
    sampling: teacher sampling (None: the teacher's DD default).
    """

    num: int
    seed: int = 0
    shard_size: int = 1024
    micro_batch: int = 16
    threads: int = 1
    dtype: str = "float32"
    flow_steps: int | None = None
    classes: tuple[int, ...] | None = None
    sampling: SamplingConfig | None = None

    def __post_init__(self) -> None:
        check_seed(self.seed)
        if self.num < 1:
            raise ValueError(f"num must be >= 1, got {self.num}")
        if self.micro_batch < 1 or self.threads < 1:
            raise ValueError("micro_batch and threads must be >= 1")
        if self.shard_size < 1 or self.shard_size % self.micro_batch:
            raise ValueError(f"shard_size ({self.shard_size}) must be a positive multiple of "
                             f"micro_batch ({self.micro_batch})")
        object.__setattr__(self, "dtype", dtypes.long_name(self.dtype))  # recorded spelling
        if self.classes is not None and not self.classes:
            raise ValueError("classes must not be empty")

    @property
    def num_shards(self) -> int:
        return -(-self.num // self.shard_size)

    def shard_range(self, k: int) -> tuple[int, int]:
        """[first, stop) sample indices of shard k."""
        if not 0 <= k < self.num_shards:
            raise ValueError(f"shard {k} outside [0, {self.num_shards})")
        first = k * self.shard_size
        return first, min(first + self.shard_size, self.num)


@dataclass(frozen=True)
class GenOptions:
    """How to compute (never what): batch_size samples decoded together (a multiple of
    micro_batch: that many teacher sessions stepped in lockstep, one flow-map call per step);
    device: "cpu" or "cuda" (cuda:LOCAL_RANK under torchrun); progress: tqdm bar on rank 0."""

    batch_size: int = 64
    device: str = "cpu"
    progress: bool = True


# Samples decoded together by default: the flow map's cost per call is dominated by fixed
# overhead below a few hundred rows (docs/pairs.md, "Throughput"), and a raster teacher gives
# it one row per sample per step.
DEFAULT_BATCH_SAMPLES = 256


def default_batch_size(micro_batch: int) -> int:
    """The smallest multiple of micro_batch that is >= DEFAULT_BATCH_SAMPLES."""
    return micro_batch * -(-DEFAULT_BATCH_SAMPLES // micro_batch)


def resolve_sampling(teacher: Teacher, settings: PairsSettings) -> SamplingConfig:
    return settings.sampling if settings.sampling is not None else teacher.default_sampling


def check_classes(teacher: Teacher, settings: PairsSettings) -> tuple[int, ...]:
    """The classes labels are drawn from (class-conditional teachers)."""
    if teacher.num_classes == 0:
        raise ValueError(f"{teacher.name} is text-conditional: give caption features "
                         "(--captions FILE), not classes")
    classes = settings.classes or tuple(range(teacher.num_classes))
    bad = [c for c in classes if not 0 <= c < teacher.num_classes]
    if bad:
        raise ValueError(f"classes {bad[:5]} outside [0, {teacher.num_classes}) of {teacher.name}")
    return tuple(int(c) for c in classes)


def token_dtype(vocab_size: int) -> str:
    """Storage dtype of tokens: uint16 when every id fits, else int32."""
    return "uint16" if vocab_size <= 65536 else "int32"


def dataset_identity(
    teacher: Teacher,
    settings: PairsSettings,
    *,
    condition: dict,
    flow: dict,
    spec: str | None = None,
) -> dict:
    """The JSON identity of a dataset. condition: {"kind": "class", "classes": [...]} or the
    caption description (`core.captions`); flow: `core.choosers.flow_identity(...)`."""
    lay = teacher.layout
    gen = asdict(settings)
    gen.pop("sampling")
    gen.pop("classes")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "teacher": {"name": teacher.name, "family": teacher.family,
                    "fingerprint": teacher.fingerprint(), "spec": spec or teacher.name},
        "layout": {"kind": lay.kind, "grid": lay.grid, "patch_nums": list(lay.patch_nums),
                   "num_positions": lay.num_positions, "num_steps": lay.num_steps},
        "vocab_size": int(teacher.vocab_size),
        "codebook_dim": int(teacher.codebook_dim),
        "token_dtype": token_dtype(teacher.vocab_size),
        "condition": condition,
        "sampling": asdict(resolve_sampling(teacher, settings)),
        "flow": flow,
        "generation": gen,
        "noise": {"derivation": "sha256-v1 (pairs/seeds.py)",
                  "generator": "torch.Generator(cpu).manual_seed(seed); torch.randn float32",
                  "shape": [lay.num_positions, int(teacher.codebook_dim)]},
    }


def identity_diff(recorded: dict, current: dict, path: tuple = ()) -> list[str]:
    """Dotted keys whose values differ between two identities ("a.b: x != y")."""
    out = []
    for k in sorted(set(recorded) | set(current)):
        p = path + (k,)
        if p in INFORMATIONAL:
            continue
        a, b = recorded.get(k, "<absent>"), current.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += identity_diff(a, b, p)
        elif a != b:
            out.append(f"{'.'.join(p)}: recorded {a!r}, now {b!r}")
    return out


def environment(device: torch.device) -> dict:
    """Where a shard was computed (recorded, not compared: see docs/pairs.md)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}"
    return {"torch": torch.__version__, "python": platform.python_version(),
            "platform": sys.platform, "device": device.type, "device_name": name}


def settings_from_identity(identity: dict) -> PairsSettings:
    """The PairsSettings a recorded identity was made with."""
    gen = dict(identity["generation"])
    cond = identity["condition"]
    classes = tuple(cond["classes"]) if cond["kind"] == "class" else None
    return PairsSettings(**gen, classes=classes, sampling=SamplingConfig(**identity["sampling"]))
