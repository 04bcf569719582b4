"""Build LlamaGen DD students: initialised from a teacher, or loaded from a DD checkpoint.

Init from the teacher (dd.py `DDTransformer.__init__` + `init_with_teacher`):
- copied from the teacher: `cls_embedding` (c2i: the class table; t2i: `cap_proj` and the null
  caption, our extension: dd.py only copies a class table), every `layers.*` weight, `norm`,
  `output`;
- new: `tok_embeddings` (Linear(d, dim): weight ~ N(0, 0.02), bias 0), `n_d_embed`
  (~ N(0, 0.02)), `final_layer_conti.linear` (weight ~ N(0, 0.02), bias 0),
  `final_layer_conti.scale_shift_table` (~ N(0, 1) / sqrt(dim));
- the class table always has num_classes + 1 rows; a teacher trained without label dropout
  has no null row, and the student's is then drawn ~ N(0, 0.02) (it is never used: the student
  runs without CFG).

Released DD checkpoints (LlamaGen-DD-B / -L, official key names) load strictly into a student
built on the meta device from the teacher's configuration.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from ardistill.errors import CheckpointError
from ardistill.student.llamagen.model import LlamaGenStudent, LlamaGenStudentConfig
from ardistill.teachers.fast_linear import set_cpu_packing
from ardistill.teachers.llamagen.gpt import GPT
from ardistill.utils.checkpoint import load_strict, read_state_dict

# Entries official files may carry that are not weights (dd.py keeps KV caches and RoPE out of
# its state dict, but files saved after a cached run would have them).
STUDENT_TRANSIENT = (r"layers\.\d+\.attention\.kv_cache\.(k|v)_cache", r"freqs_cis")


def student_config_of(teacher) -> LlamaGenStudentConfig:
    """The student configuration of a `LlamaGenTeacher` (its GPT config, dropouts zeroed)."""
    gpt = getattr(teacher, "gpt", None)
    if getattr(teacher, "family", None) != "llamagen" or not isinstance(gpt, GPT):
        raise ValueError(f"not a LlamaGen teacher: {type(teacher).__name__} "
                         f"(family {getattr(teacher, 'family', None)!r})")
    return LlamaGenStudentConfig.from_teacher(gpt.config, teacher.codebook_dim)


def _place(student: LlamaGenStudent, device, dtype, cpu_packing: bool) -> LlamaGenStudent:
    student = student.to(device=device, dtype=dtype).eval()
    set_cpu_packing(student, cpu_packing)
    return student


@torch.no_grad()
def init_from_teacher(student: LlamaGenStudent, teacher_gpt: GPT,
                      generator: torch.Generator | None = None) -> None:
    """New weights drawn as dd.py does, then the teacher's weights copied (module docstring)."""
    student.init_weights(generator)
    t_emb, s_emb = teacher_gpt.cls_embedding, student.cls_embedding
    if student.config.gpt.model_type == "c2i":
        src = t_emb.embedding_table.weight
        dst = s_emb.embedding_table.weight
        if src.shape[1] != dst.shape[1] or src.shape[0] not in (dst.shape[0], dst.shape[0] - 1):
            raise ValueError(f"teacher class table {tuple(src.shape)} does not fit the "
                             f"student's {tuple(dst.shape)}")
        dst[: src.shape[0]].copy_(src)
    else:
        s_emb.load_state_dict(t_emb.state_dict())
    student.layers.load_state_dict(teacher_gpt.layers.state_dict())
    student.norm.load_state_dict(teacher_gpt.norm.state_dict())
    student.output.load_state_dict(teacher_gpt.output.state_dict())


def build_student(teacher, *, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                  cpu_packing: bool = True) -> LlamaGenStudent:
    """A student initialised from a `LlamaGenTeacher` (dd.py `init_with_teacher` semantics).

    generator: draws the new weights (None: a generator seeded with 0); device / dtype: default
    the teacher's. cpu_packing: oneDNN-packed float32 CPU linears (teachers/fast_linear.py).
    """
    cfg = student_config_of(teacher)
    with torch.device("meta"):
        student = LlamaGenStudent(cfg)
    student = student.to_empty(device="cpu").float()
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    teacher_gpt = teacher.gpt
    if teacher_gpt.tok_embeddings.weight.device.type != "cpu":
        teacher_gpt = _cpu_copy(teacher_gpt)
    init_from_teacher(student, teacher_gpt, gen)
    device = teacher.device if device is None else device
    dtype = teacher.dtype if dtype is None else dtype
    return _place(student, device, dtype, cpu_packing)


def _cpu_copy(gpt: GPT) -> GPT:
    with torch.device("meta"):
        copy = GPT(gpt.config)
    copy.load_state_dict({k: v.detach().cpu() for k, v in gpt.state_dict().items()},
                         assign=True)
    return copy


def describe_state_dict(sd: Mapping[str, Tensor]) -> str:
    """What a state dict is, for error messages: a LlamaGen DD student of some size, a
    teacher, a VAR model, or unknown."""
    if "blocks.0.attn.mat_qkv.weight" in sd:
        return "a VAR model (transformer or DD student)"
    if "quantize.embedding.weight" in sd:
        return "a VQ tokenizer"
    if "tok_embeddings.weight" not in sd:
        return "not a LlamaGen model"
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"layers\.(\d+)\.", k))}
    w = sd["tok_embeddings.weight"]
    if "n_d_embed.weight" not in sd:
        return (f"a LlamaGen teacher GPT (dim={w.shape[1]}, {len(layers)} layers), not a DD "
                "student: build_student(teacher) initialises a student from a teacher")
    return f"a LlamaGen DD student with dim={w.shape[0]}, {len(layers)} layers"


def load_student_state(cfg: LlamaGenStudentConfig, state_dict: Mapping[str, Tensor], *,
                       what: str = "LlamaGen DD student", device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32,
                       cpu_packing: bool = True) -> LlamaGenStudent:
    """A student built on the meta device and loaded strictly from `state_dict` (official
    dd.py key names; wrappers already removed, see utils/checkpoint.read_state_dict)."""
    g = cfg.gpt
    kind = describe_state_dict(state_dict)
    if not kind.startswith("a LlamaGen DD student"):
        raise CheckpointError(f"{what}: this is {kind}, not a LlamaGen DD student")
    w = state_dict["tok_embeddings.weight"]
    n_layer = len({int(m.group(1)) for k in state_dict
                   if (m := re.match(r"layers\.(\d+)\.", k))})
    if (w.shape[0], n_layer) != (g.dim, g.n_layer):
        raise CheckpointError(f"{what}: the checkpoint is {kind}, but this teacher's student "
                              f"has dim={g.dim}, {g.n_layer} layers")
    with torch.device("meta"):
        student = LlamaGenStudent(cfg)
    load_strict(student, state_dict, what=what, transient=STUDENT_TRANSIENT, assign=True)
    return _place(student, device, dtype, cpu_packing)


def load_student(teacher, checkpoint: str | Path | Mapping[str, Tensor], *,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 cpu_packing: bool = True) -> LlamaGenStudent:
    """A released (or exported) DD student for `teacher`, loaded strictly.

    checkpoint: a file (`.pt` / `.pth` / `.safetensors`; official wrappers {"ema"|"model"|...}
    are unwrapped, "ema" first as eval_fewstep.py --ema) or a state dict.
    """
    cfg = student_config_of(teacher)
    if isinstance(checkpoint, Mapping):
        sd, what = dict(checkpoint), f"{teacher.name} DD student"
    else:
        sd, what = read_state_dict(checkpoint), f"{teacher.name} DD student ({checkpoint})"
    device = teacher.device if device is None else device
    dtype = teacher.dtype if dtype is None else dtype
    return load_student_state(cfg, sd, what=what, device=device, dtype=dtype,
                              cpu_packing=cpu_packing)
