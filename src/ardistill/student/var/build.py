"""Build VAR DD students: initialised from a teacher, or loaded from a DD checkpoint.

Init from the teacher (official `DD_Model.init_with_teacher`, VAR/models/dd.py):
- copied: `word_embed`, `class_emb` (every row, the null class included), `pos_start`, every
  `blocks.*` parameter, `head_nm`, `head`; `lvl_embed` and `pos_1LC` shifted by one level /
  position: student row 0 = teacher row 0 (the start token), student rows 2.. = teacher rows
  1.. (teacher scale s >= 1 is student level s + 1; student position 1 is the new token of
  teacher scale 0, whose level 1 is new);
- new (drawn as `VARStudent.init_dd_weights` documents): `pos_1LC[:, 1]`, `lvl_embed[1]`,
  `n_d_embed`, `layerwise_n_d_embed.*`, `final_layer_conti.*`.
- Deliberate deviation: the official code re-draws `class_emb.weight[1]` (the embedding of
  class 1!) where `lvl_embed.weight[1]` was meant, so there class 1 loses its teacher embedding
  and lvl_embed[1] keeps DD's generic init (std sqrt(1/(3C))). We copy class 1 like every other
  class and draw lvl_embed[1] ~ trunc_normal(0, init_std) as the comment of the official code
  intends. Released checkpoints are unaffected: they load whatever they hold.

Released DD checkpoints (VAR-DD-d16 / d20 / d24, `var-d{16,20,24}.pth` on the
microsoft/distilled_decoding hub page) are trainer files: `{"trainer": {"ema_parameters": sd,
"var_wo_ddp": sd, ...}}`; the official sample.py loads `ema_parameters` by default (`--ema`).
`load_student` unwraps them (or takes a plain state dict, e.g. an exported one), builds the
student on the meta device and loads every parameter strictly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from ardistill.errors import CheckpointError
from ardistill.student.var.model import VARStudent, VARStudentConfig, dd_level_buffers
from ardistill.teachers.var.model import VAR
from ardistill.utils.checkpoint import load_strict, read_file, unwrap_state_dict

# Which weights of an official trainer file to load: "ema" (sample.py's default) or "raw".
TRAINER_KEYS = {"ema": "ema_parameters", "raw": "var_wo_ddp"}
# Constant buffers (recomputed from the config): an EMA dict of parameters may lack them.
CONSTANT_BUFFERS = (r"lvl_1L", r"attn_bias_for_masking", r"blocks\.\d+\.attn\.zero_k_bias")


def student_config_of(teacher, init_std: float = 0.02) -> VARStudentConfig:
    """The student configuration of a `VARTeacher` (its transformer config)."""
    model = getattr(teacher, "model", None)
    if getattr(teacher, "family", None) != "var" or not isinstance(model, VAR):
        raise ValueError(f"not a VAR teacher: {type(teacher).__name__} "
                         f"(family {getattr(teacher, 'family', None)!r})")
    return VARStudentConfig(model.cfg, init_std=init_std)


@torch.no_grad()
def init_from_teacher(student: VARStudent, teacher: VAR,
                      generator: torch.Generator | None = None) -> None:
    """New weights drawn (`init_dd_weights`), then the teacher's copied (module docstring)."""
    if student.config.var != teacher.cfg:
        raise ValueError(f"the student was built for {student.config.var}, the teacher is "
                         f"{teacher.cfg}")
    student.init_dd_weights(generator)
    for name in ("word_embed", "class_emb", "head_nm", "head"):
        getattr(student, name).load_state_dict(getattr(teacher, name).state_dict())
    for dst, src in zip(student.blocks, teacher.blocks):
        dst.load_state_dict(src.state_dict())
    student.pos_start.copy_(teacher.pos_start)
    for dst, src in ((student.lvl_embed.weight[None], teacher.lvl_embed.weight[None]),
                     (student.pos_1LC, teacher.pos_1LC)):
        dst[:, 0].copy_(src[:, 0])  # the start token
        dst[:, 2:].copy_(src[:, 1:])  # teacher scales >= 1 (positions >= 1 of the teacher)


def build_student(teacher, *, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                  init_std: float = 0.02, compile: bool = False) -> VARStudent:
    """A student initialised from a `VARTeacher` (official `init_with_teacher` semantics,
    without its class_emb[1] slip: module docstring).

    generator: a CPU generator for the new weights (None: seeded with 0); device / dtype: default
    the teacher transformer's. init_std: std of the new embeddings (official 0.02).
    compile: run the network through torch.compile (`VARStudent.set_compile`).
    """
    cfg = student_config_of(teacher, init_std)
    with torch.device("meta"):
        student = VARStudent(cfg)
    student = student.to_empty(device="cpu").float()
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    init_from_teacher(student, _cpu_float(teacher.model), gen)
    w = teacher.model.word_embed.weight
    return _place(student, w.device if device is None else device,
                  w.dtype if dtype is None else dtype, compile)


def _cpu_float(model: VAR) -> VAR:
    w = model.word_embed.weight
    if w.device.type == "cpu" and w.dtype == torch.float32:
        return model
    with torch.device("meta"):
        copy = VAR(model.cfg)
    copy.load_state_dict({k: v.detach().cpu().float() if v.is_floating_point() else v.cpu()
                          for k, v in model.state_dict().items()}, assign=True)
    return copy


def _place(student: VARStudent, device, dtype, compile: bool) -> VARStudent:
    student = student.to(device=device, dtype=dtype).eval()
    student.set_compile(compile)
    return student


# ---------------------------------------------------------------------------- loading


def unwrap_dd_checkpoint(obj: Mapping, weights: str = "ema") -> dict[str, Tensor]:
    """The state dict inside an official VAR-DD file: `obj["trainer"][TRAINER_KEYS[weights]]`
    for trainer files, else the generic wrappers of `utils.checkpoint.unwrap_state_dict`."""
    if weights not in TRAINER_KEYS:
        raise ValueError(f"weights must be one of {sorted(TRAINER_KEYS)}, got {weights!r}")
    trainer = obj.get("trainer")
    if isinstance(trainer, Mapping):
        key = TRAINER_KEYS[weights]
        inner = trainer.get(key)
        if not isinstance(inner, Mapping) or not inner:
            have = sorted(k for k, v in trainer.items() if isinstance(v, Mapping))
            raise CheckpointError(f"the trainer file has no {key!r} state dict (weights="
                                  f"{weights!r}); it holds {have}")
        return unwrap_state_dict(inner)
    return unwrap_state_dict(obj)


def describe_state_dict(sd: Mapping[str, Tensor]) -> str:
    """What a state dict is, for error messages."""
    if "blocks.0.attn.mat_qkv.weight" in sd:
        depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
        if "n_d_embed.weight" in sd:
            return f"a VAR DD student of depth {depth}"
        return (f"a VAR teacher transformer of depth {depth}, not a DD student: "
                "build_student(teacher) initialises a student from a teacher")
    if "tok_embeddings.weight" in sd:
        return "a LlamaGen model (GPT or DD student)"
    if "quantize.embedding.weight" in sd:
        return "a VQ tokenizer"
    return "not a VAR model"


def load_student_state(cfg: VARStudentConfig, state_dict: Mapping[str, Tensor], *,
                       what: str = "VAR DD student", device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32, compile: bool = False) -> VARStudent:
    """A student built on the meta device and loaded strictly from `state_dict` (official
    `DD_Model` key names). Every parameter must be present with its exact shape; the constant
    buffers (`lvl_1L`, `attn_bias_for_masking`, `zero_k_bias`) may be absent (an EMA dict of
    parameters), and where present must equal their computed values."""
    kind = describe_state_dict(state_dict)
    want = f"a VAR DD student of depth {cfg.var.depth}"
    if kind != want:
        raise CheckpointError(f"{what}: this is {kind}, but {want} (width {cfg.var.width}) is "
                              "expected here")
    sd = dict(state_dict)
    _fill_constant_buffers(cfg, sd, what)
    with torch.device("meta"):
        student = VARStudent(cfg)
    load_strict(student, sd, what=what, assign=True)
    return _place(student, device, dtype, compile)


def _fill_constant_buffers(cfg: VARStudentConfig, sd: dict[str, Tensor], what: str) -> None:
    """Check the constant buffers a file holds; add the computed ones it lacks."""
    lvl, bias = dd_level_buffers(cfg.patch_nums)
    want = {"lvl_1L": lvl, "attn_bias_for_masking": bias}
    want.update({f"blocks.{i}.attn.zero_k_bias": torch.zeros(cfg.var.width)
                 for i in range(cfg.var.depth)})
    for k, ref in want.items():
        if k not in sd:
            sd[k] = ref
        elif tuple(sd[k].shape) == tuple(ref.shape) and not torch.equal(sd[k].float(),
                                                                      ref.float()):
            raise CheckpointError(f"{what}: buffer {k!r} differs from its value for DD "
                                  f"patch_nums {cfg.patch_nums} (a model of another layout?)")


def load_student(teacher, checkpoint: str | Path | Mapping[str, Tensor], *,
                 weights: str = "ema", device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, compile: bool = False) -> VARStudent:
    """A released (or exported) VAR DD student for `teacher`, loaded strictly.

    checkpoint: a file (`.pth` trainer file of the official release, `.pt` / `.safetensors`
        state dict) or a state dict. weights: "ema" (the official sample.py default) or "raw"
        (`var_wo_ddp`) for trainer files.
    device / dtype: default the teacher transformer's.
    """
    cfg = student_config_of(teacher)
    if isinstance(checkpoint, Mapping):
        sd, what = unwrap_dd_checkpoint(checkpoint, weights), f"{teacher.name} DD student"
    else:
        sd = unwrap_dd_checkpoint(read_file(checkpoint), weights)
        what = f"{teacher.name} DD student ({checkpoint})"
    w = teacher.model.word_embed.weight
    return load_student_state(cfg, sd, what=what, device=w.device if device is None else device,
                              dtype=w.dtype if dtype is None else dtype, compile=compile)
