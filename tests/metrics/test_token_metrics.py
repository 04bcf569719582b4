"""Token agreement and bits per token."""

from __future__ import annotations

import math

import pytest
import torch

from ardistill.metrics.tokens import bits_per_token, token_agreement, token_agreement_per_position


def test_agreement_values():
    a = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    b = torch.tensor([[1, 0, 3, 0], [5, 6, 0, 0]])
    assert token_agreement(a, a) == 1.0
    assert token_agreement(a, a + 1) == 0.0
    assert token_agreement(a, b) == pytest.approx(4 / 8)
    per = token_agreement_per_position(a, b)
    assert per.dtype == torch.float64
    assert per.tolist() == [1.0, 0.5, 0.5, 0.0]


def test_agreement_errors():
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        token_agreement(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        token_agreement(torch.zeros(2, 3), torch.zeros(2, 3))


def test_bits_per_token():
    assert bits_per_token(torch.full((3, 5), math.log(0.5))) == pytest.approx(1.0)
    uniform = torch.full((2, 7), -math.log(16384))  # LlamaGen codebook, uniform
    assert bits_per_token(uniform) == pytest.approx(14.0)
    lp = torch.tensor([[0.0, math.log(0.25)], [math.log(0.125), -100.0]])
    mask = torch.tensor([[True, True], [True, False]])
    assert bits_per_token(lp, mask) == pytest.approx((0 + 2 + 3) / 3)
    assert bits_per_token(torch.tensor([0.0, -math.inf])) == math.inf


def test_bits_per_token_errors():
    with pytest.raises(ValueError, match="<= 0"):
        bits_per_token(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="NaN"):
        bits_per_token(torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="mask"):
        bits_per_token(torch.zeros(2, 2), torch.ones(2, 3, dtype=torch.bool))
