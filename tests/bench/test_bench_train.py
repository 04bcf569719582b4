"""`ardistill bench train`: analytic FLOPs, and the harness + CLI on the embedded preset's shape
(random weights)."""

from __future__ import annotations

import json

from ardistill.bench.train import matmul_params, train_flops_per_sample
from ardistill.cli import main
from ardistill.student.registry import build_student
from ardistill.teachers.registry import load_teacher


def test_flops_formula_by_hand():
    teacher = load_teacher("mnist-llamagen", random_weights=True)
    student = build_student(teacher)
    g = student.config.gpt
    # per block: wqkv (3 d^2) + wo (d^2) + 3 FFN matrices (d x hidden); + input, heads
    hidden = student.layers[0].feed_forward.w1.weight.shape[0]
    per_block = 4 * g.dim * g.dim + 3 * g.dim * hidden
    heads = g.dim * g.vocab_size + g.dim * 8 + 8 * g.dim  # output, conti head, tok_embeddings
    assert matmul_params(student) == g.n_layer * per_block + heads
    seq = 65
    assert train_flops_per_sample(student, seq) == 6.0 * matmul_params(student) * seq + \
        12.0 * g.n_layer * seq * seq * g.dim


def test_bench_train_cli(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "train", "--presets", "mnist-var", "--batch", "2", "--warmup", "0",
                 "--repeats", "1", "--threads", "1", "--peak-tflops", "1.0",
                 "--json", str(out)]) == 0
    rec = json.loads(out.read_text())[0]
    assert rec["preset"] == "mnist-var" and rec["samples_per_s"] > 0
    assert 0 < rec["mfu"] < 1 and rec["train_gflops_per_sample"] > 0
    assert rec["repeats"] == 1 and rec["min_s_per_step"] <= rec["s_per_step"]
    text = capsys.readouterr().out
    assert "samples/s" in text and "(median of 1, min " in text
    assert text.startswith("CPU ") and "1 threads" in text.splitlines()[0]
