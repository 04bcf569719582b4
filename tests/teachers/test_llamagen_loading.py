"""Loading LlamaGen checkpoints: wrappers, transient keys, wrong files, clear errors, presets."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from ardistill.errors import CheckpointError
from ardistill.teachers.base import Condition
from ardistill.teachers.llamagen.config import GPTConfig, VQConfig
from ardistill.teachers.llamagen.gpt import GPT
from ardistill.teachers.llamagen.loading import load_gpt
from ardistill.teachers.llamagen.presets import DD_SAMPLING, PRESETS, build_teacher, detect_preset
from ardistill.teachers.preset import DDDefaults, TeacherPreset
from ardistill.teachers.registry import get_preset, load_teacher


@pytest.fixture(scope="module")
def tiny(oracle):
    d = oracle / "llamagen"
    c = json.loads((d / "config.json").read_text())
    vq_cfg = VQConfig.from_official(c["vq"]["model_args"], c["vq"]["encoder_decoder_override"])
    return {
        "c2i_cfg": GPTConfig.from_official(c["c2i_teacher"]["model_args_resolved"]),
        "vq_cfg": vq_cfg,
        "c2i": torch.load(d / "c2i_teacher_state_dict.pt", weights_only=True),
        "t2i": torch.load(d / "t2i_teacher_state_dict.pt", weights_only=True),
        "vq": torch.load(d / "vq_state_dict.pt", weights_only=True),
        "io": torch.load(d / "c2i_teacher_io.pt", weights_only=True),
    }


def tiny_preset(tiny, **kw) -> TeacherPreset:
    return TeacherPreset(name="tiny-llamagen", family="llamagen", description="test",
                         model_config=tiny["c2i_cfg"], tokenizer_config=tiny["vq_cfg"],
                         sampling=DD_SAMPLING, dd=DDDefaults(t2=8, split=8), **kw)


def _save(tmp_path, name, obj):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _check_logits(teacher, tiny):
    io = tiny["io"]
    got = teacher.forward_logits(io["tokens"], Condition(labels=io["labels"]))
    torch.testing.assert_close(got, io["logits_cond"], atol=2e-4, rtol=0)


WRAPPERS = {
    "raw": lambda sd: sd,
    "model": lambda sd: {"model": sd, "steps": torch.tensor(5)},
    "ema": lambda sd: {"ema": sd, "model": {k: v * 0 for k, v in sd.items()}},
    "module": lambda sd: {"module": sd},
    "state_dict": lambda sd: {"state_dict": sd},
    "ddp-prefix": lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
    "kv-cache+freqs": lambda sd: {**sd, "freqs_cis": torch.zeros(65, 8, 2),
                                  "layers.0.attention.kv_cache.k_cache": torch.zeros(4, 4, 72, 16),
                                  "layers.1.attention.kv_cache.v_cache": torch.zeros(4, 4, 72, 16)},
    "training-args": lambda sd: {"model": sd, "args": argparse.Namespace(lr=1e-4, gpt="GPT-B")},
}


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_official_wrappers_load(tmp_path, tiny, wrapper):
    gpt_file = _save(tmp_path, "gpt.pt", WRAPPERS[wrapper](tiny["c2i"]))
    vq_file = _save(tmp_path, "vq.pt", {"model": tiny["vq"]})
    teacher = build_teacher(tiny_preset(tiny), model_ckpt=gpt_file, tokenizer_ckpt=vq_file)
    _check_logits(teacher, tiny)


def test_loading_assigns_without_copies_or_init(tiny):
    gpt = load_gpt(tiny["c2i_cfg"], tiny["c2i"], what="tiny")
    assert gpt.tok_embeddings.weight.data_ptr() == tiny["c2i"]["tok_embeddings.weight"].data_ptr()
    assert not any(p.is_meta for p in gpt.parameters())


def test_wrong_model_files_say_what_they_are(tmp_path, tiny):
    gpt_file = _save(tmp_path, "gpt.pt", tiny["c2i"])
    vq_file = _save(tmp_path, "vq.pt", tiny["vq"])
    t2i_file = _save(tmp_path, "t2i.pt", tiny["t2i"])
    var_file = _save(tmp_path, "var.pt", {"blocks.0.attn.mat_qkv.weight": torch.zeros(3, 3)})
    preset = tiny_preset(tiny)
    with pytest.raises(CheckpointError, match="LlamaGen VQ tokenizer checkpoint.*GPT"):
        build_teacher(preset, model_ckpt=vq_file, tokenizer_ckpt=vq_file)
    with pytest.raises(CheckpointError, match="class-conditional GPT checkpoint.*VQ tokenizer"):
        build_teacher(preset, model_ckpt=gpt_file, tokenizer_ckpt=gpt_file)
    with pytest.raises(CheckpointError, match="text-conditional GPT"):
        build_teacher(preset, model_ckpt=t2i_file, tokenizer_ckpt=vq_file)
    with pytest.raises(CheckpointError, match="VAR transformer"):
        build_teacher(preset, model_ckpt=var_file, tokenizer_ckpt=vq_file)
    with pytest.raises(CheckpointError, match="not a checkpoint of any known teacher"):
        load_teacher(str(gpt_file))  # tiny GPT: no preset of its size


def test_size_mismatch_names_the_detected_preset(tmp_path, tiny):
    gpt_file = _save(tmp_path, "gpt.pt", tiny["c2i"])
    vq_file = _save(tmp_path, "vq.pt", tiny["vq"])
    with pytest.raises(CheckpointError, match=r"dim=64, 2 layers.*not llamagen-b"):
        build_teacher(PRESETS["llamagen-b"], model_ckpt=gpt_file, tokenizer_ckpt=vq_file)


def test_shape_unknown_and_missing_keys_are_errors(tmp_path, tiny):
    preset = tiny_preset(tiny)
    vq_file = _save(tmp_path, "vq.pt", tiny["vq"])
    bad = dict(tiny["c2i"], **{"layers.1.attention.wo.weight": torch.zeros(64, 32)})
    msg = r"layers\.1\.attention\.wo\.weight.*\(64, 32\).*\(64, 64\)"
    with pytest.raises(CheckpointError, match=msg):
        build_teacher(preset, model_ckpt=_save(tmp_path, "a.pt", bad), tokenizer_ckpt=vq_file)
    extra = dict(tiny["c2i"], **{"layers.0.attention.bias": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"not in the model.*layers\.0\.attention\.bias"):
        build_teacher(preset, model_ckpt=_save(tmp_path, "b.pt", extra), tokenizer_ckpt=vq_file)
    missing = {k: v for k, v in tiny["c2i"].items() if k != "norm.weight"}
    with pytest.raises(CheckpointError, match=r"missing from the checkpoint.*norm\.weight"):
        build_teacher(preset, model_ckpt=_save(tmp_path, "c.pt", missing), tokenizer_ckpt=vq_file)
    vq_bad = {k: v for k, v in tiny["vq"].items() if k != "quantize.codebook_used"}
    with pytest.raises(CheckpointError, match="quantize.codebook_used"):
        build_teacher(preset, model_ckpt=_save(tmp_path, "d.pt", tiny["c2i"]),
                      tokenizer_ckpt=_save(tmp_path, "e.pt", vq_bad))


class _Opaque:
    pass


def test_missing_and_pickle_files(tmp_path, tiny):
    preset = tiny_preset(tiny)
    with pytest.raises(CheckpointError, match="not found"):
        build_teacher(preset, model_ckpt=tmp_path / "nope.pt", tokenizer_ckpt=tmp_path / "x.pt")
    pickled = _save(tmp_path, "p.pt", {"model": tiny["c2i"], "extra": _Opaque()})
    with pytest.raises(CheckpointError, match="pickle"):
        build_teacher(preset, model_ckpt=pickled, tokenizer_ckpt=pickled)


def test_presets_without_files_name_the_official_files():
    with pytest.raises(CheckpointError, match=r"c2i_B_256\.pt.*vq_ds16_c2i\.pt"):
        load_teacher("llamagen-b")
    with pytest.raises(CheckpointError, match=r"t2i_XL_stage1_256\.pt.*vq_ds16_t2i\.pt"):
        build_teacher(PRESETS["llamagen-xl-t2i"])
    with pytest.raises(CheckpointError, match="no official one was released"):
        build_teacher(PRESETS["llamagen-7b"])


def test_embedded_presets_load_their_package_files(tmp_path, tiny):
    files = {"model_file": _save(tmp_path, "m.pt", tiny["c2i"]),
             "tokenizer_file": _save(tmp_path, "t.pt", tiny["vq"])}
    teacher = build_teacher(tiny_preset(tiny, embedded=True, extra=files))
    _check_logits(teacher, tiny)
    again = build_teacher(tiny_preset(tiny, embedded=True, extra=files))
    assert teacher.fingerprint() == again.fingerprint()
    with torch.no_grad():
        again.gpt.norm.weight.add_(1e-3)
    assert teacher.fingerprint() != again.fingerprint()


def test_preset_table_and_detection():
    expected = {"llamagen-b": (768, 12), "llamagen-l": (1024, 24), "llamagen-xl": (1280, 36),
                "llamagen-xxl": (1536, 48), "llamagen-xxxl": (2560, 48), "llamagen-1b": (2048, 22),
                "llamagen-3b": (3200, 24), "llamagen-7b": (4096, 32), "llamagen-xl-t2i": (1280, 36)}
    assert set(expected) <= set(PRESETS)
    for name, (dim, layers) in expected.items():
        p = get_preset(name)
        assert (p.model_config.dim, p.model_config.n_layer) == (dim, layers)
        assert p.sampling == DD_SAMPLING
        assert p.tokenizer_config.codebook_size == 16384 == p.model_config.vocab_size
        with torch.device("meta"):
            sd = GPT(p.model_config).state_dict()
        assert detect_preset(sd) == name
    assert PRESETS["llamagen-b"].dd == DDDefaults(t2=80, split=80)
    l_dd = DDDefaults(t2=80, split=130, split_teacher_involved=(180, 220))
    assert PRESETS["llamagen-l"].dd == l_dd
    assert PRESETS["llamagen-xl"].dd == DDDefaults(t2=80, split=130)
    assert PRESETS["llamagen-xl-t2i"].model_config.cls_token_num == 120
    assert detect_preset({"quantize.embedding.weight": torch.zeros(4, 2)}) is None


def test_random_weight_preset_is_the_full_shape():
    t = load_teacher("llamagen-b", random_weights=True)
    assert (t.vocab_size, t.codebook_dim, t.image_size, t.layout.num_steps) == (16384, 8, 256, 256)
    assert t.num_classes == 1000 and t.default_sampling.top_k == 8000
    assert t.gpt.output.weight.abs().sum() > 0  # informative logits for benchmarks
