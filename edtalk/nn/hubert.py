"""HuBERT speech features for the paper's audio2exp input (Sec. 3.4), from a LOCAL `transformers` checkpoint.

The paper feeds HuBERT speech-emotion features (plus EmoBERTa text features) to its audio-to-expression
network. We never download weights: `load_hubert` reads a `transformers` HuBERT folder (config.json +
weights, as `save_pretrained` / `huggingface-cli download` write them) that the user fetched, and
`HubertFeatures` turns a clip's 16 kHz audio into T x D features at the video's 25 fps, which
`datamodules.preprocess.hubert` stores beside the shards. `transformers` is an optional extra
(`pip install -c constraints.txt -e '.[hubert]'`).

Shapes: wav L samples (16 kHz) -> HuBERT frames N x D (50 Hz for the released models) -> T x D video frames.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640 samples of audio per video frame
WHERE = (
    "download a transformers HuBERT checkpoint folder yourself, e.g. `huggingface-cli download "
    "facebook/hubert-large-ls960-ft --local-dir PATH` (or the speech-emotion HuBERT the paper used, "
    "e.g. superb/hubert-large-superb-er), and pass that folder"
)


def require_transformers() -> Any:
    try:
        import transformers
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "HuBERT features need the optional `transformers` package: "
            "pip install -c constraints.txt -e '.[hubert]'"
        ) from err
    return transformers


def load_hubert(path: str | Path) -> nn.Module:
    """The `transformers.HubertModel` saved in folder `path` (local files only), in eval mode.

    Raises:
        FileNotFoundError: `path` is not a folder with a config.json (the message says where to get one).
    """
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no HuBERT checkpoint at {folder} (expected config.json + weights): {WHERE}")
    model: nn.Module = require_transformers().HubertModel.from_pretrained(str(folder), local_files_only=True)
    return model.eval()


def wants_normalized_input(path: str | Path, model: nn.Module) -> bool:
    """Whether the checkpoint expects zero-mean unit-variance audio: its preprocessor_config.json's
    `do_normalize` when present, else the rule of the released models (layer-norm feature extractors,
    the large ones, were trained on normalised audio; group-norm ones, the base ones, on raw audio)."""
    pre = Path(path) / "preprocessor_config.json"
    if pre.is_file():
        return bool(json.loads(pre.read_text()).get("do_normalize", False))
    return getattr(model.config, "feat_extract_norm", "group") == "layer"


def to_video_rate(feats: torch.Tensor, num_frames: int) -> torch.Tensor:
    """N x D HuBERT frames spanning the clip -> num_frames x D (linear interpolation between frame centres).

    HuBERT's frames (20 ms hop) and the video's (40 ms) cover the same audio, so frame t of the video
    (centre (t + 0.5) / 25 s) takes the HuBERT frames around the same time: `align_corners=False`
    interpolation maps centres to centres whatever N is (2T - 1 for the released models).
    """
    x = feats.t()[None]  # -> 1 x D x N
    return F.interpolate(x, size=num_frames, mode="linear", align_corners=False)[0].t().contiguous()


class HubertFeatures(nn.Module):
    """A frozen HuBERT: 16 kHz audio of one clip -> T x D features at 25 fps.

    Args:
        model: a `transformers.HubertModel` (`load_hubert`).
        layer: which hidden state to keep (-1: the last; 0: the input of the first transformer layer).
        normalize: standardise each clip's audio first (see `wants_normalized_input`).
    """

    def __init__(self, model: nn.Module, layer: int = -1, normalize: bool = False) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.layer, self.normalize = layer, normalize

    @property
    def dim(self) -> int:
        """D, the width of the features."""
        config: Any = self.model.config  # a transformers PretrainedConfig
        return int(config.hidden_size)

    def train(self, mode: bool = True) -> HubertFeatures:
        """Stays in eval mode: a frozen feature extractor (no dropout, no masking of time steps)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, wav: torch.Tensor, num_frames: int) -> torch.Tensor:
        """wav L (16 kHz mono) -> num_frames x D float32; the audio is cut or zero-padded to num_frames x 640."""
        length = num_frames * SAMPLES_PER_FRAME
        wav = F.pad(wav[:length], (0, max(0, length - wav.shape[0])))
        if self.normalize:
            wav = (wav - wav.mean()) / torch.sqrt(wav.var() + 1e-7)
        device = next(self.model.parameters()).device
        out = self.model(wav[None].to(device), output_hidden_states=self.layer != -1)
        hidden = out.last_hidden_state if self.layer == -1 else out.hidden_states[self.layer]
        return to_video_rate(hidden[0].float().cpu(), num_frames)  # N x D -> T x D


__all__ = ["FPS", "SAMPLE_RATE", "WHERE", "HubertFeatures", "load_hubert", "to_video_rate"]
