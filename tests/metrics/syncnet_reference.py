"""An independent rewrite of syncnet_python's LSE input preparation and `SyncNetInstance.evaluate`.

Written from the reference's behaviour, not shared with our code: the ffmpeg command line does every
conversion (`-async 1 -r 25` into an .avi as run_pipeline.py does, frames out through the image2 muxer, the
audio with `-async 1 -ac 1 -vn -acodec pcm_s16le -ar 16000` as evaluate() does), frames are read back with
`cv2.imread` (BGR), the audio with `scipy.io.wavfile`, MFCC with python_speech_features, and the offset
search is the reference's per-frame loop of `pairwise_distance`. Two substitutions keep it lossless and
so comparable to the last bit: the .avi holds FFV1 video and PCM audio (the reference: MPEG-4 q2 and
MP3), the frames are PNG (the reference: JPEG).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tests.avclips import ffmpeg


@dataclass
class Reference:
    offset: int
    lse_d: float
    lse_c: float
    frames: np.ndarray  # T x H x W x 3 BGR uint8 as evaluate() reads them
    audio: np.ndarray  # int16


def prepare(video: Path, work: Path) -> tuple[np.ndarray, np.ndarray]:
    """BGR frames and int16 mono 16 kHz audio of `video`, through the ffmpeg CLI as syncnet_python does."""
    import cv2
    from scipy.io import wavfile

    work.mkdir(parents=True, exist_ok=True)
    avi = work / "video.avi"
    ffmpeg("-i", str(video), "-async", "1", "-r", "25", "-c:v", "ffv1", "-c:a", "pcm_s16le", str(avi))
    ffmpeg("-i", str(avi), "-threads", "1", "-f", "image2", str(work / "%06d.png"))
    ffmpeg(
        "-i", str(avi), "-async", "1", "-ac", "1", "-vn", "-acodec", "pcm_s16le", "-ar", "16000", str(work / "audio.wav")
    )  # fmt: skip
    frames = np.stack([cv2.imread(str(p)) for p in sorted(work.glob("*.png"))])
    _, audio = wavfile.read(work / "audio.wav")
    return frames, audio


def evaluate(net: torch.nn.Module, frames: np.ndarray, audio: np.ndarray, vshift: int = 15) -> Reference:
    """syncnet_python's evaluate() on prepared inputs (frames already 224 x 224)."""
    import python_speech_features

    im = torch.from_numpy(
        np.transpose(frames[None], (0, 4, 1, 2, 3)).astype(float)
    ).float()  # 1 x 3 x T x H x W
    cc = np.stack(list(zip(*python_speech_features.mfcc(audio, 16000), strict=True)))  # 13 x N
    cct = torch.from_numpy(cc[None, None].astype(float)).float()
    lastframe = min(len(frames), math.floor(len(audio) / 640)) - 5
    im_feat, cc_feat = [], []
    with torch.no_grad():
        for i in range(0, lastframe, 20):
            span = range(i, min(lastframe, i + 20))
            im_feat.append(net.forward_lip(torch.cat([im[:, :, v : v + 5] for v in span], 0)))
            cc_feat.append(net.forward_aud(torch.cat([cct[:, :, :, v * 4 : v * 4 + 20] for v in span], 0)))
    vf, af = torch.cat(im_feat, 0), torch.cat(cc_feat, 0)
    padded = torch.nn.functional.pad(af, (0, 0, vshift, vshift))
    win = 2 * vshift + 1
    dists = [
        torch.nn.functional.pairwise_distance(vf[[i], :].repeat(win, 1), padded[i : i + win, :])
        for i in range(len(vf))
    ]
    mdist = torch.mean(torch.stack(dists, 1), 1)
    minval, minidx = torch.min(mdist, 0)
    conf = torch.median(mdist) - minval
    return Reference(int(vshift - minidx), float(minval), float(conf), frames, audio)


def reference_lse(net: torch.nn.Module, video: Path, work: Path, vshift: int = 15) -> Reference:
    return evaluate(net, *prepare(video, work), vshift=vshift)
