"""Loading VAR checkpoints strictly: wrappers, clear errors, meta-device builds, presets."""

from __future__ import annotations

import json

import pytest
import torch

from ardistill.errors import CheckpointError
from ardistill.teachers.var.config import from_official_build_args
from ardistill.teachers.var.model import VAR
from ardistill.teachers.var.presets import PRESETS, build_teacher, detect_preset
from ardistill.teachers.var.tiny import tiny_configs, tiny_teacher
from ardistill.teachers.var.weights import load_var, load_vqvae


@pytest.fixture(scope="module")
def tiny():
    t = tiny_teacher(seed=1)
    return t, t.model.state_dict(), t.vqvae.state_dict()


def test_roundtrip_through_files_and_wrappers(tiny, tmp_path):
    t, msd, vsd = tiny
    var_cfg, vae_cfg = tiny_configs()
    for i, wrap in enumerate((lambda sd: sd, lambda sd: {"model": sd}, lambda sd: {"ema": sd},
                              lambda sd: {"module." + k: v for k, v in sd.items()})):
        path = tmp_path / f"var{i}.pth"
        torch.save(wrap(msd), path)
        model = load_var(var_cfg, path)
        assert not any(p.is_meta for p in model.parameters())
        for k, v in model.state_dict().items():
            assert torch.equal(v, msd[k]), k
    torch.save(vsd, tmp_path / "vae.pth")
    vae = load_vqvae(vae_cfg, tmp_path / "vae.pth")
    assert torch.equal(vae.quantize.ema_vocab_hit_SV, vsd["quantize.ema_vocab_hit_SV"])


def test_missing_unknown_and_misshapen_keys_are_named(tiny):
    _, msd, _ = tiny
    var_cfg, _ = tiny_configs()
    sd = dict(msd)
    del sd["blocks.1.attn.zero_k_bias"]
    with pytest.raises(CheckpointError, match=r"blocks\.1\.attn\.zero_k_bias"):
        load_var(var_cfg, sd)
    sd = dict(msd, **{"blocks.0.attn.extra": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"not in the model.*blocks\.0\.attn\.extra"):
        load_var(var_cfg, sd)
    sd = dict(msd, **{"head.weight": torch.zeros(65, 64)})
    with pytest.raises(CheckpointError, match=r"'head\.weight'.*\(65, 64\).*\(64, 64\)"):
        load_var(var_cfg, sd)


def test_buffers_are_checked_not_trusted(tiny):
    _, msd, _ = tiny
    var_cfg, _ = tiny_configs()
    sd = dict(msd, attn_bias_for_masking=torch.zeros_like(msd["attn_bias_for_masking"]))
    with pytest.raises(CheckpointError, match="attn_bias_for_masking"):
        load_var(var_cfg, sd)
    sd = dict(msd, **{"blocks.0.attn.zero_k_bias": torch.ones(64)})
    with pytest.raises(CheckpointError, match="zero_k_bias"):
        load_var(var_cfg, sd)


def test_a_file_of_the_wrong_kind_says_so(tiny):
    _, msd, vsd = tiny
    var_cfg, vae_cfg = tiny_configs()
    with pytest.raises(CheckpointError, match="VQVAE checkpoint"):
        load_var(var_cfg, vsd)
    with pytest.raises(CheckpointError, match="VAR transformer checkpoint"):
        load_vqvae(vae_cfg, msd)
    with pytest.raises(CheckpointError, match="LlamaGen GPT"):
        load_var(var_cfg, {"tok_embeddings.weight": torch.zeros(4, 4)})
    with pytest.raises(CheckpointError, match="DD student"):
        load_var(var_cfg, dict(msd, **{"n_d_embed.weight": torch.zeros(2, 64)}))


def test_preset_without_files_names_the_official_files():
    with pytest.raises(ValueError, match=r"var_d20\.pth.*vae_ch160v4096z32\.pth"):
        build_teacher(PRESETS["var-d20"])
    with pytest.raises(ValueError, match=r"needs the official weight files vae_ch160v4096z32"):
        build_teacher(PRESETS["var-d16"], model_ckpt="var_d16.pth")


def _meta_state_dict(cfg):
    with torch.device("meta"):
        return VAR(cfg).state_dict()


def test_detect_preset_and_wrong_size(tiny):
    for name, p in PRESETS.items():
        assert detect_preset(_meta_state_dict(p.model_config)) == name
    _, msd, vsd = tiny
    assert detect_preset(msd) is None and detect_preset(vsd) is None
    d20 = _meta_state_dict(PRESETS["var-d20"].model_config)
    with pytest.raises(CheckpointError, match="var-d20 checkpoint, not var-d16"):
        build_teacher(PRESETS["var-d16"], model_ckpt=d20, tokenizer_ckpt=vsd)
    with pytest.raises(CheckpointError, match="expected the var-d16 transformer"):
        build_teacher(PRESETS["var-d16"], model_ckpt=msd, tokenizer_ckpt=vsd)


def test_presets_follow_the_brief():
    official = {n: p for n, p in PRESETS.items() if not p.embedded}
    assert sorted(official) == ["var-d16", "var-d20", "var-d24", "var-d30"]
    assert sorted(set(PRESETS) - set(official)) == ["mnist-var"]  # docs/zoo.md
    for name, p in official.items():
        depth = int(name.split("d")[-1])
        assert p.family == "var" and not p.embedded
        assert p.official_files == (f"var_d{depth}.pth", "vae_ch160v4096z32.pth")
        assert p.model_config.patch_nums == (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
        assert (p.model_config.vocab_size, p.model_config.cvae) == (4096, 32)
        assert (p.tokenizer_config.ch, p.tokenizer_config.share_quant_resi) == (160, 4)
        assert (p.sampling.cfg_scale, p.sampling.top_k, p.sampling.top_p) == (2.0, 900, 0.95)
        assert (p.dd.t2, p.dd.split) == ((5, 5) if depth == 16 else (4, 4))


def test_official_pack_files_load_through_the_preset_machinery(oracle):
    cfg = json.loads((oracle / "var" / "config.json").read_text())
    var_cfg, vae_cfg = from_official_build_args(cfg["build_vae_var_args"],
                                                cfg["vae_encoder_decoder_override"])
    model = load_var(var_cfg, oracle / "var" / "var_teacher_state_dict.pt")
    vae = load_vqvae(vae_cfg, oracle / "var" / "vqvae_state_dict.pt")
    assert model.cfg.width == cfg["embed_dim"] and model.cfg.heads == cfg["num_heads"]
    assert vae.quantize.phi_index == cfg["phi_index_per_scale"]
    with pytest.raises(CheckpointError, match="DD student"):
        load_var(var_cfg, oracle / "var" / "var_dd_state_dict.pt")


def test_random_weights_are_seeded_and_fingerprinted():
    a, b, c = tiny_teacher(seed=0), tiny_teacher(seed=0), tiny_teacher(seed=1)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert len(a.fingerprint()) == 64
