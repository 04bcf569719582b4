"""A tiny end-to-end run with a golden loss trace (torchtitan's debug-model test)."""

from __future__ import annotations

import pytest
from train_helpers import debug_cfg

from ardistill.training import train

# recipe("debug") on tiny-llamagen pairs (64 samples, seed 1), timesteps {0, 1}, split 2,
# seed 0, one CPU thread. Regenerate only for an intended change of the training math.
GOLDEN_LLAMAGEN = [14.712306022644043, 14.355658531188965, 12.885733604431152,
                   10.935493469238281, 11.357255935668945, 9.993060111999512,
                   9.566498756408691, 6.922560691833496, 7.191051959991455,
                   7.9386773109436035]
GOLDEN_VAR = [6.012041091918945, 5.911891937255859, 5.87863826751709, 5.770292282104492,
              5.536920547485352, 5.224485397338867, 4.8964080810546875, 4.655896186828613,
              4.916592597961426, 4.707161903381348]


@pytest.mark.parametrize("spec, golden", [("tiny-llamagen", GOLDEN_LLAMAGEN),
                                          ("tiny-var", GOLDEN_VAR)])
def test_golden_loss_trace(pairs_cache, tiny, tmp_path, spec, golden):
    res = train(debug_cfg(pairs_cache(spec), tmp_path / "run"), teacher=tiny(spec))
    assert len(res.losses) == 10
    assert res.losses == pytest.approx(golden, rel=1e-4, abs=1e-6)
    assert res.losses[-1] < res.losses[0]  # it learns
    assert res.export.is_file() and res.last_eval["step"] == 10
