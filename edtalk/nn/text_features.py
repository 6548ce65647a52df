"""Per-clip text vectors for the paper's audio2exp input (EmoBERTa features), from a LOCAL `transformers` model.

The paper adds EmoBERTa features of the spoken text to HuBERT's. `load_text_encoder` reads a
`transformers` folder (tokenizer + encoder, e.g. `tae898/emoberta-base` or `roberta-base` that the user
downloaded; never fetched here) and `TextFeatures` maps transcripts to one D-vector each: the final
hidden state of the first token (`<s>`, what RoBERTa's sequence-classification head reads).
`datamodules.preprocess.hubert.extract_text` stores them as `<shard>.text.npz`.

Shapes: N strings -> N x D float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edtalk.nn.hubert import require_transformers

WHERE = (
    "download a transformers text-encoder folder with its tokenizer yourself, e.g. `huggingface-cli download "
    "tae898/emoberta-base --local-dir PATH` (EmoBERTa, the paper's) or roberta-base, and pass that folder"
)


def load_text_encoder(path: str | Path) -> tuple[Any, nn.Module]:
    """(tokenizer, encoder in eval mode) from folder `path`, local files only.

    Raises:
        FileNotFoundError: `path` is not a folder with a config.json (the message says where to get one).
    """
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"no text-encoder checkpoint at {folder} (expected config.json + tokenizer): {WHERE}"
        )
    tf = require_transformers()
    tokenizer = tf.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model: nn.Module = tf.AutoModel.from_pretrained(str(folder), local_files_only=True)
    return tokenizer, model.eval().requires_grad_(False)


class TextFeatures:
    """Transcripts -> one vector each (first-token final hidden state), in batches."""

    def __init__(self, tokenizer: Any, model: nn.Module, batch_size: int = 32) -> None:
        self.tokenizer, self.model, self.batch_size = tokenizer, model, batch_size

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """N strings -> N x D float32 (CPU)."""
        device = next(self.model.parameters()).device
        rows = []
        for i in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[i : i + self.batch_size]), padding=True, truncation=True, return_tensors="pt"
            )
            out = self.model(
                **{k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            )
            rows.append(out.last_hidden_state[:, 0].float().cpu())  # B x L x D -> B x D
        return torch.cat(rows)


__all__ = ["WHERE", "TextFeatures", "load_text_encoder"]
