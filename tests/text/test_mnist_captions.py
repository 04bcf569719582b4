"""Captions of the embedded digits (`ardistill.text.mnist_captions`): the attribute cuts are
the terciles of the train split, every wording names its digit, and prompt parsing finds it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ardistill.data.mnist import mnist_images
from ardistill.text import mnist_captions as M


@pytest.fixture(scope="module")
def train():
    return mnist_images("train")


def test_cuts_are_the_train_terciles_per_digit(train):
    x, y = train
    measured = M.attribute_cuts(M.measure(x), y)
    assert measured == M.ATTRIBUTE_CUTS
    levels = M.measure(x).levels(y)
    for name in ("thickness", "slant"):  # continuous: thirds, per digit
        for d in range(10):
            counts = np.bincount(levels[name][y.numpy() == d], minlength=3)
            assert counts.min() >= 0.3 * counts.sum(), (name, d, counts)


def test_attributes_read_the_pixels():
    img = -torch.ones(3, 1, 32, 32)
    img[0, 0, 6:26, 15:17] = 1.0  # a thin upright bar
    img[1, 0, 6:26, 13:19] = 1.0  # a thick upright bar
    for r in range(20):  # a bar leaning right: top shifted right
        img[2, 0, 6 + r, 20 - r // 3 : 22 - r // 3] = 1.0
    a = M.measure(img)
    assert a.thickness[1] > 2.5 * a.thickness[0]
    assert abs(a.slant[0]) < 1e-9 and a.slant[2] > 0.25
    assert a.width.tolist() == [2.0, 6.0, 8.0]


def test_every_caption_names_its_digit():
    for d, t, numeral in itertools.product(range(10), range(len(M.TEMPLATES)), (False, True)):
        for lv in itertools.product(range(3), repeat=3):
            text = M.caption(d, dict(zip(M.NAMES, lv)), t, numeral)
            assert M.digit_of_prompt(text) == d, text
            assert "  " not in text and not text.startswith(" ") and "{" not in text
    assert M.caption(8, {"thickness": 1, "slant": 1, "width": 1}, 2, False) == "an eight"
    assert M.caption(8, {"thickness": 2, "slant": 0, "width": 0}, 3, True) == \
        "a narrow thick 8, leaning left"


def test_write_captions_is_seeded_and_varied(train):
    x, y = train
    a = M.write_captions(x[:50], y[:50], 4, seed=3)
    assert a == M.write_captions(x[:50], y[:50], 4, seed=3)
    assert a != M.write_captions(x[:50], y[:50], 4, seed=4)
    assert all(len(set(caps)) == 4 for caps in a)
    assert all(M.digit_of_prompt(c) == int(d) for caps, d in zip(a, y[:50]) for c in caps)
    with pytest.raises(ValueError, match="per_image"):
        M.write_captions(x[:2], y[:2], 11, seed=0)


def test_balanced_prompts_and_prompt_parsing():
    prompts, digits = M.balanced_prompts(40, seed=11)
    assert digits == [i % 10 for i in range(40)]
    assert [M.digit_of_prompt(p) for p in prompts] == digits
    assert M.digit_of_prompt("A THICK SEVEN") == 7
    assert M.digit_of_prompt("hello world") == -1
    assert M.digit_of_prompt("a 3 next to a five") == -1  # two digits: none is the answer
    assert M.digit_of_prompt("seven, 7") == 7
