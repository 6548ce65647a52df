"""LSE-D / LSE-C exactly as syncnet_python's `SyncNetInstance.evaluate` (Chung & Zisserman 2016).

Protocol (syncnet_python `demo_syncnet.py`, as used by Wav2Lip and every talking-head paper since):
25 fps frames, 224^2 face crops (BGR, raw 0..255), 16 kHz int16 audio, MFCC with 13 coefficients,
25 ms window, 10 ms step (python_speech_features defaults: 26 mel filters, 512-point FFT, pre-emphasis
0.97, lifter 22, c0 replaced by log frame energy). Frame t is paired with the 5 frames t..t+4 and the
20 MFCC columns 4t..4t+19; features are compared at offsets -vshift..+vshift (zero-padded), `mdist` is
the mean distance per offset, LSE-D = min(mdist), LSE-C = median(mdist) - min(mdist),
AV offset = vshift - argmin(mdist): positive when the audio leads the video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.fft import dct

SAMPLE_RATE = 16000
FPS = 25
MFCC_PER_FRAME = 4  # 100 Hz MFCC / 25 fps
WINDOW_FRAMES = 5
VSHIFT = 15


# -- MFCC (python_speech_features 0.6 `mfcc`, default arguments) ------------------------------------
def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595 * np.log10(1 + np.asarray(hz) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700 * (10 ** (mel / 2595.0) - 1)


def mel_filterbank(nfilt: int = 26, nfft: int = 512, rate: int = SAMPLE_RATE) -> np.ndarray:
    """nfilt x (nfft//2+1) triangular filters on FFT-bin edges, as python_speech_features builds them."""
    mels = np.linspace(_hz_to_mel(0.0), _hz_to_mel(rate / 2), nfilt + 2)
    bins = np.floor((nfft + 1) * _mel_to_hz(mels) / rate)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        lo, mid, hi = int(bins[j]), int(bins[j + 1]), int(bins[j + 2])
        fb[j, lo:mid] = (np.arange(lo, mid) - bins[j]) / (bins[j + 1] - bins[j])
        fb[j, mid:hi] = (bins[j + 2] - np.arange(mid, hi)) / (bins[j + 2] - bins[j + 1])
    return fb


def _frames(signal: np.ndarray, frame_len: int, step: int) -> np.ndarray:
    n = 1 if len(signal) <= frame_len else 1 + math.ceil((len(signal) - frame_len) / step)
    padded = np.concatenate([signal, np.zeros((n - 1) * step + frame_len - len(signal))])
    idx = np.arange(frame_len)[None, :] + step * np.arange(n)[:, None]  # -> n x frame_len
    return padded[idx]


def mfcc(signal: np.ndarray, rate: int = SAMPLE_RATE, numcep: int = 13, nfft: int = 512) -> np.ndarray:
    """N x numcep MFCC of a 1-D signal (int16 scale, as syncnet_python reads its wav), 100 frames/s."""
    x = np.asarray(signal, np.float64)
    x = np.append(x[0], x[1:] - 0.97 * x[:-1])
    frames = _frames(x, round(0.025 * rate), round(0.01 * rate))
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft  # -> N x (nfft//2+1)
    energy = power.sum(1)
    energy = np.where(energy == 0, np.finfo(float).eps, energy)
    feat = power @ mel_filterbank(26, nfft, rate).T
    feat = np.where(feat == 0, np.finfo(float).eps, feat)
    cep = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :numcep]
    cep = cep * (1 + 11.0 * np.sin(np.pi * np.arange(numcep) / 22))  # lifter L=22
    cep[:, 0] = np.log(energy)
    return cep


def audio_to_int16_scale(wav: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> the int16 sample values syncnet_python gets from `ffmpeg -acodec pcm_s16le`."""
    return np.clip(np.round(np.asarray(wav, np.float64) * 32768.0), -32768, 32767)


# -- windows and offset search ----------------------------------------------------------------------
def num_windows(num_frames: int, num_samples: int) -> int:
    """Number of 5-frame windows: min(frames, floor(samples / 640)) - 5 (syncnet_python's `lastframe`)."""
    return max(0, min(num_frames, num_samples // (SAMPLE_RATE // FPS)) - WINDOW_FRAMES)


def video_windows(frames: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """frames: T x 3 x H x W -> (stop-start) x 3 x 5 x H x W windows t..t+4 for t in [start, stop)."""
    idx = torch.arange(start, stop)[:, None] + torch.arange(WINDOW_FRAMES)[None, :]  # -> N x 5
    return frames[idx].permute(0, 2, 1, 3, 4)  # N x 5 x 3 x H x W -> N x 3 x 5 x H x W


def audio_windows(cc: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """cc: 13 x N MFCC -> (stop-start) x 1 x 13 x 20 windows at columns 4t..4t+19."""
    width = WINDOW_FRAMES * MFCC_PER_FRAME
    idx = MFCC_PER_FRAME * torch.arange(start, stop)[:, None] + torch.arange(width)[None, :]  # -> N x 20
    return cc[:, idx].permute(1, 0, 2).unsqueeze(1)  # 13 x N x 20 -> N x 1 x 13 x 20


def offset_distances(
    video_feat: torch.Tensor, audio_feat: torch.Tensor, vshift: int = VSHIFT
) -> torch.Tensor:
    """N x (2 vshift + 1): dists[i, j] = ||v_i - a_{i+j-vshift} + 1e-6|| (pairwise_distance), zero-padded."""
    n, win = video_feat.shape[0], 2 * vshift + 1
    padded = F.pad(audio_feat, (0, 0, vshift, vshift))
    idx = torch.arange(n)[:, None] + torch.arange(win)[None, :]  # -> N x win
    diff = video_feat[:, None, :] - padded[idx] + 1e-6
    return diff.norm(dim=-1)


@dataclass
class SyncScore:
    """One video's result: AV offset (frames, + = audio leads), LSE-D (min dist), LSE-C (confidence)."""

    offset: int
    lse_d: float
    lse_c: float
    mdist: torch.Tensor

    def as_dict(self) -> dict[str, float | int]:
        return {"offset": self.offset, "lse_d": self.lse_d, "lse_c": self.lse_c}


def sync_score(dists: torch.Tensor, vshift: int = VSHIFT) -> SyncScore:
    """N x (2 vshift + 1) distances -> offset, LSE-D, LSE-C (torch.median = lower middle, as upstream)."""
    if dists.shape[0] == 0:
        raise ValueError("no 5-frame windows: the clip needs at least 6 frames and 0.24 s of audio")
    mdist = dists.mean(0)
    minval, minidx = torch.min(mdist, 0)
    conf = torch.median(mdist) - minval
    return SyncScore(vshift - int(minidx), float(minval), float(conf), mdist)
