"""The contracts every workflow shares (pairs, training, sampling, the demo, the app).

- `seeds`: per-sample randomness, a pure function of (seed, sample index): DD noise, class
  labels, caption rows, choice seeds;
- `choosers`: how a step's distribution becomes tokens: the flow map driven by each position's
  noise, per-sample multinomial draws, argmax;
- `captions`: caption feature files of text-conditional teachers;
- `pairs_format`, `pairs_dataset`: the on-disk pairs dataset (manifest, shards) and its
  memory-mapped reader.

This floor imports the teacher protocol and the flow map below it, never a workflow.
"""
