"""`scripts/fidelity.py` with the flow token choice replaced by a noise-driven inverse-CDF draw
from softmax(logits / T): u = Phi(eps_0) of each position's own noise, tokens sorted by
probability. Deterministic in the noise like the flow map, cost ~0; a measurement of whether a
generic sampler can stand in for the flow map (docs/fidelity.md, session 6: it cannot), not a
library feature. Same arguments as fidelity.py, with `--dd-choice flow --dd-temperature T`:

    python scripts/fidelity_inverse_cdf.py --teacher mnist-var --out DIR --student 1=FILE \\
        --dd-choice flow --dd-temperature 0.7 --threads 1
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import ardistill.sampling.run as run

_flow_choice = run.dd_token_choice


def inverse_cdf_choice(choice, codebook, flow_steps=None, temperature=1.0):
    if choice != "flow":
        return _flow_choice(choice, codebook, flow_steps, temperature)

    def choose(logits, noise):
        p = torch.softmax(logits.float() / temperature, -1).double()
        u = torch.special.ndtr(noise[..., 0].to(p.device, torch.float64))
        ps, idx = p.sort(-1, descending=True)
        k = (ps.cumsum(-1) < u.unsqueeze(-1)).sum(-1).clamp_max(p.shape[-1] - 1)
        return idx.gather(-1, k.unsqueeze(-1)).squeeze(-1).long()

    return choose


if __name__ == "__main__":
    run.dd_token_choice = inverse_cdf_choice
    sys.path.insert(0, str(Path(__file__).parent))
    import fidelity

    raise SystemExit(fidelity.main(sys.argv[1:]))
