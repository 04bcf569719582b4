"""Assertions shared by the oracle tests (teachers and students): tensors compared with the
official code's outputs, with messages that say what differs and by how much."""

from __future__ import annotations

import torch
from torch import Tensor


def assert_close(got: Tensor, ref: Tensor, atol: float, what: str, *,
                 same_dtype: bool = False) -> None:
    """Same shape (and dtype with same_dtype), max abs diff <= atol; infinite entries (-inf
    logits of one-hot rows) must coincide exactly."""
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} vs {tuple(ref.shape)}"
    if same_dtype:
        assert got.dtype == ref.dtype, f"{what}: dtype {got.dtype} vs {ref.dtype}"
    inf_g, inf_r = torch.isinf(got), torch.isinf(ref)
    assert torch.equal(inf_g, inf_r), f"{what}: infinite entries differ"
    assert torch.equal(got[inf_g], ref[inf_r]), f"{what}: infinities of another sign"
    fin_g, fin_r = got[~inf_g], ref[~inf_r]
    err = (fin_g.double() - fin_r.double()).abs().max().item() if fin_g.numel() else 0.0
    assert err <= atol, f"{what}: max abs diff {err:.3g} > {atol:.3g}"


def assert_exact(got: Tensor, ref: Tensor, what: str, *, same_dtype: bool = False) -> None:
    """Same shape (and dtype with same_dtype) and equal entries (integers compared as int64)."""
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} vs {tuple(ref.shape)}"
    if same_dtype:
        assert got.dtype == ref.dtype, f"{what}: dtype {got.dtype} vs {ref.dtype}"
    if not got.is_floating_point() and not ref.is_floating_point():
        got, ref = got.long(), ref.long()
    bad = (got != ref).sum().item()
    assert bad == 0, f"{what}: {bad} of {ref.numel()} entries differ"


def assert_key_listing(m: torch.nn.Module, ref: dict, official_count: int | None = None) -> None:
    """A (meta-device) model against an official key listing (oracle README §6): keys in
    order, shapes, dtypes, parameter vs buffer, and the parameter count (also equal to
    `official_count` when given)."""
    from ardistill.utils.checkpoint import count_parameters

    sd = m.state_dict()
    params = dict(m.named_parameters())
    assert list(sd) == list(ref["state_dict"]), "keys or their order differ"
    assert len(sd) == ref["num_state_dict_keys"]
    for k, spec in ref["state_dict"].items():
        assert list(sd[k].shape) == spec["shape"], f"{k}: {tuple(sd[k].shape)} vs {spec['shape']}"
        assert str(sd[k].dtype).removeprefix("torch.") == spec["dtype"], k
        assert (k in params) == (spec["kind"] == "parameter"), f"{k}: parameter vs buffer"
    assert count_parameters(m) == ref["num_parameters"]
    if official_count is not None:
        assert ref["num_parameters"] == official_count
    assert sum(v.numel() for v in sd.values()) == ref["state_dict_numel"]
