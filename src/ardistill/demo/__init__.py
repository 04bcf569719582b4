"""`ardistill demo`: the whole method on the embedded teachers, on a laptop CPU in minutes.

For each shipped teacher (`mnist-llamagen`, `mnist-var`): flow-mapped pairs
(`ardistill.pairs`), a 1-step and a 2-step student (`ardistill.training`), samples of every
method (`ardistill.sampling`), FID on the shipped MNIST features, token agreement and teacher
NLL, time per image at batch 1, and a Table-1-shaped report (docs/demo.md).

    from ardistill.demo.config import DemoConfig
    from ardistill.demo.run import run_demo
    result = run_demo(DemoConfig.quick().replace(out="demo_out"))
"""
