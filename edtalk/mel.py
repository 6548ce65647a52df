"""Wav2Lip mel features and the per-video-frame mel windows (SPEC 4.1), plus temporal smoothing (4.2).

Numerics follow the original code as it ran under librosa 0.8 (checked against
`shared/upstream/parity/ref_audio2lip.pt` to ~1e-13):

* pre-emphasis `y[n] = x[n] - 0.97 x[n-1]` in float64;
* STFT n_fft 800, hop 200, periodic Hann window of 800, centred with **reflect** padding (librosa >= 0.10
  pads with zeros by default, so we compute the STFT here with numpy), magnitude in float64;
* float32 80-band slaney mel filterbank 55-7600 Hz (applied in float64);
* `20 log10(max(1e-5, .)) - 20`, then `clip(8 (S + 100) / 100 - 4, -4, 4)`.

Video runs at 25 fps and the mel at 80 frames/s, so video frame t owns the 16 mel frames starting at
`int(80 (t - 2) / 25)` (about frames t-2 .. t+2, i.e. centred on t), clamped to the valid range.
"""

from __future__ import annotations

import functools
from typing import Literal, overload

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
N_FFT = 800
HOP = 200
N_MELS = 80
FMIN, FMAX = 55.0, 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0
MEL_FRAMES_PER_SECOND = SAMPLE_RATE / HOP  # 80
WINDOW_FRAMES = 16  # mel frames per video-frame window (200 ms)
# Normalised Gaussian (k=3, sigma=1) of the demos' `conv_feat`, rounded to float32 as upstream.
SMOOTHING_KERNEL = (0.27406862, 0.45186276, 0.27406862)
SMOOTHING_PADDINGS = ("zero", "replicate")  # `smooth_coefficients(padding=)`: upstream's, ours

FloatArray = npt.NDArray[np.floating]


def _as_mono(wav: FloatArray | torch.Tensor) -> npt.NDArray[np.float64]:
    arr = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    if arr.ndim != 1:
        raise ValueError(
            f"expected a mono waveform of shape (samples,), got shape {arr.shape}; "
            "read audio with edtalk.io.read_audio (16 kHz mono) or average the channels first"
        )
    return arr.astype(np.float64)


@functools.lru_cache(maxsize=1)
def mel_basis() -> npt.NDArray[np.float32]:
    """The 80 x 401 slaney mel filterbank (float32, as librosa builds it)."""
    import librosa

    basis = librosa.filters.mel(
        sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX, dtype=np.float32
    )
    return np.asarray(basis, dtype=np.float32)


@functools.lru_cache(maxsize=1)
def _hann() -> npt.NDArray[np.float64]:
    n = np.arange(N_FFT)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)  # periodic Hann (scipy get_window fftbins=True)


def stft_magnitude(signal: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """|STFT| with librosa 0.8's centred reflect padding: (N_FFT/2+1) x (1 + len // HOP)."""
    pad = N_FFT // 2
    if len(signal) <= pad:
        raise ValueError(
            f"waveform of {len(signal)} samples is too short for the centred STFT (needs > {pad}); "
            f"use at least {SAMPLES_PER_FRAME} samples (one 40 ms video frame) or pad it with silence"
        )
    padded = np.pad(signal, pad, mode="reflect")
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n_frames)[:, None]
    frames = padded[idx] * _hann()[None, :]  # -> n_frames x N_FFT
    return np.abs(np.fft.rfft(frames, axis=1)).T  # -> (N_FFT/2+1) x n_frames


def mel_spectrogram(wav: FloatArray | torch.Tensor) -> npt.NDArray[np.float64]:
    """Wav2Lip mel spectrogram of a 16 kHz mono waveform.

    Args:
        wav: (samples,) float waveform at 16 kHz.

    Returns:
        n_mel_frames x 80 float64 array in [-4, 4], n_mel_frames = 1 + samples // 200.
    """
    x = _as_mono(wav)
    emphasised = np.empty_like(x)
    emphasised[0] = x[0]
    emphasised[1:] = x[1:] - PREEMPHASIS * x[:-1]
    mel = mel_basis().astype(np.float64) @ stft_magnitude(emphasised)  # -> 80 x frames
    db = 20.0 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
    norm = 2 * MAX_ABS_VALUE * (db - MIN_LEVEL_DB) / -MIN_LEVEL_DB - MAX_ABS_VALUE
    return np.clip(norm, -MAX_ABS_VALUE, MAX_ABS_VALUE).T


def num_video_frames(num_samples: int) -> int:
    """Video frames (25 fps) covered by `num_samples` of 16 kHz audio: floor(samples / 640)."""
    return num_samples // SAMPLES_PER_FRAME


def window_rows(num_frames: int, num_mel_frames: int) -> npt.NDArray[np.int64]:
    """Mel-frame indices of each video frame's window: T x 16, row t = int(80 (t-2) / 25) + 0..15, clamped.

    `int()` truncates toward zero, so frames 0 and 1 start at -6 and -3 (then clamp to 0), as upstream.
    """
    t = np.arange(num_frames)
    start = np.trunc(MEL_FRAMES_PER_SECOND * (t - 2) / FPS).astype(np.int64)
    rows = start[:, None] + np.arange(WINDOW_FRAMES)[None, :]
    return np.clip(rows, 0, num_mel_frames - 1)


@overload
def mel_windows(
    wav: FloatArray | torch.Tensor, return_details: Literal[False] = ...
) -> npt.NDArray[np.float32]: ...


@overload
def mel_windows(
    wav: FloatArray | torch.Tensor, return_details: Literal[True]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float64]]: ...


def mel_windows(
    wav: FloatArray | torch.Tensor, return_details: bool = False
) -> npt.NDArray[np.float32] | tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Per-video-frame mel windows of a 16 kHz mono waveform (window t centred on video frame t).

    The waveform is first cut to T * 640 samples, T = floor(len(wav) / 640) (the demos' frame count).

    Args:
        wav: (samples,) waveform at 16 kHz, at least 640 samples.
        return_details: also return the row table and the full mel spectrogram.

    Returns:
        windows T x 1 x 80 x 16 float32; with `return_details` the tuple
        (windows, rows T x 16 int64, mel n_mel_frames x 80 float64).
    """
    x = _as_mono(wav)
    t = num_video_frames(len(x))
    if t < 1:
        raise ValueError(
            f"audio has {len(x)} samples ({len(x) / SAMPLE_RATE:.3f} s at {SAMPLE_RATE} Hz), shorter "
            f"than one video frame ({SAMPLES_PER_FRAME} samples = 40 ms); use a longer clip or pad it "
            "with silence"
        )
    mel = mel_spectrogram(x[: t * SAMPLES_PER_FRAME])
    rows = window_rows(t, mel.shape[0])
    stacked = mel[rows]  # -> T x 16 x 80
    # -> T x 1 x 80 x 16 (mel bins x time, as the networks expect)
    windows: npt.NDArray[np.float32] = np.ascontiguousarray(
        stacked.transpose(0, 2, 1)[:, None], dtype=np.float32
    )
    if return_details:
        return windows, rows, mel
    return windows


def smooth_coefficients(x: torch.Tensor, padding: str = "zero") -> torch.Tensor:
    """Smooth coefficient sequences over time (the demos' `conv_feat`, k=3, sigma=1, padding 1).

    Args:
        x: T x C or B x T x C.
        padding: "zero" (upstream: the first and last frames are attenuated, i.e. pulled towards the
            all-zero weights) or "replicate" (each end frame repeated: every output is a weighted mean
            of frames, so a constant sequence stays constant and no frame leaves the weights' range;
            what our measurements use, `metrics.render.reconstruct_from_audio`).

    Returns:
        Same shape and dtype.
    """
    if x.ndim not in (2, 3):
        raise ValueError(f"smooth_coefficients expects T x C or B x T x C, got shape {tuple(x.shape)}")
    if padding not in SMOOTHING_PADDINGS:
        raise ValueError(f"smooth_coefficients: padding={padding!r}, expected one of {SMOOTHING_PADDINGS}")
    seq = x[None] if x.ndim == 2 else x
    b, t, c = seq.shape
    kernel = torch.tensor(SMOOTHING_KERNEL, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
    # -> (B*C) x 1 x T: one independent channel per coefficient
    flat = seq.permute(0, 2, 1).reshape(b * c, 1, t)
    if padding == "replicate":
        flat = torch.cat([flat[..., :1], flat, flat[..., -1:]], -1)
    out = F.conv1d(flat, kernel.view(1, 1, 3), padding=1 if padding == "zero" else 0)
    out = out.reshape(b, c, t).permute(0, 2, 1)  # -> B x T x C
    return out[0] if x.ndim == 2 else out
