"""512² face super-resolution of generated frames with GFPGAN v1.4 (`--face-sr`).

The original demos run `gfpgan.GFPGANer` on every frame of the finished 256² video (face detection,
FFHQ alignment, restoration, paste-back into a 2x-resized background). Our generated frames are
already face crops, so `FaceRestorer` upsamples each frame to 512² (bilinear, as the alignment warp
does) and restores the whole frame in batches, with no detector and no second video pass:

    restorer = FaceRestorer("GFPGANv1.4.pth", device="cuda", batch_size=8)
    big = restorer.restore(frames)  # B x 3 x 256 x 256 -> B x 3 x 512 x 512, both in [-1, 1]

Weights load strictly from a local file (never downloaded); `load_gfpgan` names the file and where to
get it when it is missing or of another kind.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from edtalk.nn.gfpgan import GFPGAN, GFPGANConfig

if TYPE_CHECKING:
    from edtalk.pipeline import Inputs, Pipeline, Result


def load_gfpgan(path: str | Path, cfg: GFPGANConfig | None = None) -> GFPGAN:
    """The official `GFPGANv1.4.pth` (or any file of its layout) as an eval-mode `GFPGAN`.

    The architecture is read from the file's shapes unless `cfg` is given. Loading is the one official
    path (`edtalk.weights.load_official`, kind "gfpgan"): every key and shape checked, strict load.

    Raises:
        CheckpointError: the file is missing (the message says where to download it), unreadable, or
            not of the GFPGAN v1.4 layout.
    """
    from edtalk.weights import load_official

    model: GFPGAN = load_official(path, "gfpgan", cfg=cfg)
    return model


class FaceRestorer:
    """Batched GFPGAN restoration of generated face frames to 512² (or the model's `out_size`).

    Args:
        weights_path: `GFPGANv1.4.pth` (official layout, `params_ema`).
        device: torch device string or device ("cpu", "cuda", "cuda:1").
        batch_size: frames per network call.
        bf16: run under bfloat16 autocast (GPUs).
        randomize_noise: draw fresh StyleGAN noise per frame as GFPGANer does (default: the stored
            noise maps, which keep video frames stable and batching exact).
        cfg: architecture of the file (default: read from its shapes; v1.4 for the official file).
    """

    def __init__(
        self,
        weights_path: str | Path,
        device: str | torch.device = "cpu",
        batch_size: int = 4,
        *,
        bf16: bool = False,
        randomize_noise: bool = False,
        cfg: GFPGANConfig | None = None,
    ) -> None:
        self._setup(load_gfpgan(weights_path, cfg), device, batch_size, bf16, randomize_noise)

    @classmethod
    def from_module(
        cls, net: GFPGAN, device: str | torch.device = "cpu", batch_size: int = 4, **kwargs: Any
    ) -> FaceRestorer:
        """Wrap an already-built `GFPGAN` (e.g. random weights for tests and the UI's demo model)."""
        self = cls.__new__(cls)
        self._setup(net, device, batch_size, kwargs.get("bf16", False), kwargs.get("randomize_noise", False))
        return self

    def _setup(
        self, net: GFPGAN, device: str | torch.device, batch_size: int, bf16: bool, randomize_noise: bool
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"face-SR batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.net = net.eval().to(self.device)
        self.batch_size, self.bf16, self.randomize_noise = batch_size, bf16, randomize_noise

    @property
    def size(self) -> int:
        """Output side in pixels (512 for GFPGAN v1.4)."""
        return self.net.cfg.out_size

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def restore(self, frames: torch.Tensor) -> torch.Tensor:
        """Restore B x 3 x H x W frames in [-1, 1] -> B x 3 x size x size in [-1, 1] (float32, input's device).

        Frames are upsampled (bilinear) to the model size, restored `batch_size` at a time, and clamped.
        """
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"FaceRestorer.restore expects B x 3 x H x W frames, got {tuple(frames.shape)}")
        out = []
        with torch.inference_mode(), self._autocast():
            for chunk in frames.split(self.batch_size):
                x = chunk.to(self.device, torch.float32)
                if x.shape[-2:] != (self.size, self.size):
                    x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
                y = self.net(x.clamp(-1, 1), randomize_noise=self.randomize_noise)
                out.append(y.float().clamp(-1, 1).to(frames.device))
        return torch.cat(out)

    def restore_stream(self, chunks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """`restore` applied lazily to a stream of frame chunks (e.g. `Pipeline.stream`)."""
        for chunk in chunks:
            yield self.restore(chunk)


def _soundtrack(inputs: Inputs) -> np.ndarray | None:
    """The clip's sound, as `Pipeline` muxes it: the audio, else the lip video's, else the source video's."""
    from edtalk.io import probe_video, read_audio
    from edtalk.pipeline import is_image

    if inputs.audio is not None:
        return read_audio(inputs.audio)
    for path in (inputs.lip, inputs.source):
        if path is not None and not is_image(Path(path)) and probe_video(path).has_audio:
            return read_audio(path)
    return None


def render_restored(
    pipe: Pipeline, inputs: Inputs, out: str | Path, restorer: FaceRestorer, progress: bool = True
) -> Result:
    """Render like `pipe(inputs, out)` with every frame restored to 512² before it is written.

    Frames stream from `Pipeline.stream` through `FaceRestorer.restore` into the H.264 writer, so no
    256² video is written or decoded in between.
    """
    from tqdm import tqdm

    from edtalk.io import FPS, VideoWriter, to_uint8
    from edtalk.pipeline import Result

    start = time.perf_counter()
    with (
        VideoWriter(out, fps=FPS, audio=_soundtrack(inputs)) as writer,
        tqdm(unit="frame", desc="generate + face SR", disable=not progress) as bar,
    ):
        for chunk in restorer.restore_stream(pipe.stream(inputs)):
            writer.write(to_uint8(chunk))
            bar.update(len(chunk))
    n = writer.frames_written
    return Result(writer.path, n, FPS, time.perf_counter() - start, {"face_sr": f"GFPGAN {restorer.size}²"})
