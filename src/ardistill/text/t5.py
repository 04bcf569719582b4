"""The T5 text encoder of LlamaGen t2i (flan-t5-xl) from a local folder, offline.

Every convention follows the official code (FoundationVision/LlamaGen, read at commit
ce98ec4; none of it is copied):

- model: `T5EncoderModel` + its tokenizer (`AutoTokenizer`) from a local folder
  (language/t5.py:T5Embedder.__init__ with `local_cache=True`: the folder is
  `--t5-path/flan-t5-xl`, autoregressive/sample/sample_t2i.py:main and its `--t5-model-type
  flan-t5-xl` default). We load with `local_files_only=True`; PATH may be the model folder or
  the official `--t5-path` folder holding `flan-t5-xl/`.
- dtype: bfloat16 (language/t5.py:T5Embedder.__init__: `torch_dtype or torch.bfloat16`;
  sample_t2i.py passes `torch_dtype=precision`, `--precision` default bf16; the training
  features of language/extract_t5_feature.py:main are bf16 too, saved as float32). Our default
  is bf16, `--encoder-dtype` changes it; the features are returned as float32 (exact for bf16).
- 120 token slots (`model_max_length=120` of T5Embedder, `--t5-feature-max-len 120` of
  sample_t2i.py, `t5_feature_max_len = 120` of dataset/t2i.py).
- tokenizer call (language/t5.py:T5Embedder.get_text_embeddings): `max_length=120,
  padding="max_length", truncation=True, return_attention_mask=True,
  add_special_tokens=True`; so a prompt gets its EOS `</s>` after its tokens, also when it is
  truncated (the tokenizer truncates to 119 tokens and appends the EOS), and pads on the
  right.
- features: the encoder's `last_hidden_state` given `input_ids` and `attention_mask`
  (get_text_embeddings), with gradients off.
- left padding (autoregressive/sample/sample_t2i.py:main, the block under `if not
  args.no_left_padding`): the mask is flipped (`torch.flip(emb_masks, dims=[-1])`), each row's
  n valid tokens move to the end (`cat([emb[n:], emb[:n]])`), and the padding is zeroed
  (`new_caption_embs * new_emb_masks[:, :, None]`): `ardistill.text.layout.left_pad`.
- text: get_text_embeddings first runs `T5Embedder.text_preprocessing`. Both of its branches
  lower-case the prompt and strip it (`use_text_preprocessing=False`: `text.lower().strip()`);
  the default branch (`clean_caption`, PixArt's caption cleaner, run twice, needing ftfy and
  BeautifulSoup) also removes URLs, HTML, @names, CJK characters, some punctuation runs and
  shop words. We lower-case and strip only: an ordinary prompt tokenizes the same way; one
  with URLs, markup or such punctuation may not.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ardistill.errors import DataFileError

OFFICIAL_NAME = "flan-t5-xl"


def model_folder(path: str | Path) -> Path:
    """PATH itself when it holds config.json, else PATH/flan-t5-xl (the official --t5-path
    layout); a `DataFileError` when neither does."""
    path = Path(path)
    for folder in (path, path / OFFICIAL_NAME):
        if (folder / "config.json").is_file():
            return folder
    if not path.exists():
        raise DataFileError(f"T5 model folder not found: {path}")
    raise DataFileError(f"{path}: not a T5 model folder (no config.json in it nor in "
                        f"{path / OFFICIAL_NAME}); give --encoder t5:FOLDER of a local "
                        "flan-t5-xl (config.json, weights, spiece.model/tokenizer files)")


def preprocess(prompt: str) -> str:
    """What both branches of the official text preprocessing do to an ordinary prompt."""
    return prompt.lower().strip()


class T5Encoder:
    """prompts -> (last_hidden_state (B, T, D) in `dtype`, attention mask (B, T) bool),
    right-padded, T = max_length."""

    def __init__(self, path: str | Path, max_length: int = 120,
                 dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu"):
        from transformers import AutoTokenizer, T5EncoderModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        folder = model_folder(path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.model = T5EncoderModel.from_pretrained(str(folder), local_files_only=True,
                                                        dtype=dtype).to(device).eval()
        except (OSError, ValueError) as e:
            raise DataFileError(f"{folder}: cannot load the T5 encoder or its tokenizer "
                                f"from local files ({e})") from e
        self.tokenizer.padding_side = "right"  # the official layout before left padding
        self.max_length = max_length
        self.device = torch.device(device)

    def tokenize(self, prompts: list[str]) -> dict[str, Tensor]:
        return self.tokenizer([preprocess(p) for p in prompts], max_length=self.max_length,
                              padding="max_length", truncation=True,
                              return_attention_mask=True, add_special_tokens=True,
                              return_tensors="pt")

    @torch.inference_mode()
    def __call__(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        tok = self.tokenize(prompts)
        mask = tok["attention_mask"].to(self.device)
        hidden = self.model(input_ids=tok["input_ids"].to(self.device),
                            attention_mask=mask).last_hidden_state
        return hidden, mask.bool()
