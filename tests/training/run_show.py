"""Train 1-step students on tiny teachers' pairs and compare their held-out token
agreement with the onestep* baseline (closed form). Prints one line per teacher.

    OMP_NUM_THREADS=1 PYTHONPATH=src python tests/training/run_show.py OUT_DIR [NUM_PAIRS] [STEPS]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ardistill.core.pairs_dataset import PairsDataset
from ardistill.pairs.config import GenOptions, PairsSettings
from ardistill.pairs.run import generate_pairs
from ardistill.training import recipe, train
from ardistill.training.evaluate import marginal_frequencies, onestep_expected_agreement
from tiny_teachers import load_tiny  # noqa: E402

SPLITS = {"tiny-llamagen": 5, "tiny-var": 2}  # logits-head steps (teachers of no preset)


def main(out: Path, num: int, steps: int) -> None:
    for spec, split in SPLITS.items():
        teacher = load_tiny(spec)
        pairs = out / f"pairs-{spec}"
        t0 = time.time()
        generate_pairs(teacher, PairsSettings(num=num, seed=0, shard_size=256, micro_batch=16),
                       pairs, options=GenOptions(batch_size=64, progress=False))
        gen_s = time.time() - t0
        holdout = 256
        cfg = recipe("tiny-1step", pairs=str(pairs), out=str(out / f"run-{spec}"), split=split,
                     timesteps=(0,), steps=steps, holdout=holdout, eval_samples=holdout,
                     eval_every=0, progress=False)
        res = train(cfg, teacher=teacher)
        ds = PairsDataset(pairs)
        tr, held = ds.split_holdout(holdout)
        base = onestep_expected_agreement(marginal_frequencies(tr, ds.vocab_size), held)
        ev = res.last_eval
        print(f"{spec}: {num} pairs ({gen_s:.0f} s), {steps} steps ({res.seconds:.0f} s, "
              f"{res.samples_per_second:.0f} samples/s): held-out agreement DD 1-step "
              f"{ev['agree_1step']:.4f} vs onestep* {base:.4f} (first loss "
              f"{res.losses[0]:.3f}, last {res.losses[-1]:.3f})", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1024,
         int(sys.argv[3]) if len(sys.argv) > 3 else 300)
