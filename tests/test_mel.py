"""Wav2Lip mel features, per-frame mel windows (SPEC 4.1) and temporal smoothing (SPEC 4.2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edtalk import mel as melspec
from tests.conftest import shared_dir

REF = shared_dir() / "upstream" / "parity" / "ref_audio2lip.pt"
needs_ref = pytest.mark.skipif(not REF.is_file(), reason=f"parity reference not found at {REF}")


def burst(num_frames: int, frame: int, seed: int = 0) -> np.ndarray:
    """Silence with white noise during video frame `frame` (samples frame*640 .. +640)."""
    wav = np.zeros(num_frames * melspec.SAMPLES_PER_FRAME, dtype=np.float32)
    start = frame * melspec.SAMPLES_PER_FRAME
    wav[start : start + melspec.SAMPLES_PER_FRAME] = np.random.default_rng(seed).standard_normal(640) * 0.5
    return wav


@needs_ref
def test_mel_and_windows_match_the_original_librosa_08_numbers() -> None:
    ref = torch.load(REF, weights_only=True)
    windows, rows, mel = melspec.mel_windows(ref["inputs"]["wav"].numpy(), return_details=True)
    out = ref["outputs"]
    assert mel.shape == (183, 80) and windows.shape == (57, 1, 80, 16) and windows.dtype == np.float32
    assert np.abs(mel - out["wav_mel"].numpy()).max() < 1e-9
    assert np.array_equal(windows, out["wav_windows"].numpy().astype(np.float32))
    assert np.array_equal(rows, out["wav_window_rows"].numpy())
    assert np.array_equal(melspec.mel_spectrogram(ref["inputs"]["wav"][: 57 * 640]), mel)


def test_reflect_padding_differs_from_zero_padding_at_the_edges() -> None:
    """librosa >= 0.10 pads with zeros; upstream (0.8) reflected: only the edge frames differ."""
    wav = np.random.default_rng(1).standard_normal(16000) * 0.1
    ours = melspec.mel_spectrogram(wav)
    pad = np.pad(wav, 400)  # zero padding, then frames as if not centred
    emph = np.concatenate([[pad[0]], pad[1:] - 0.97 * pad[:-1]])
    frames = np.stack([emph[i * 200 : i * 200 + 800] for i in range(ours.shape[0])]) * melspec._hann()
    mag = np.abs(np.fft.rfft(frames, axis=1)).T
    db = 20 * np.log10(np.maximum(1e-5, melspec.mel_basis().astype(np.float64) @ mag)) - 20
    zero_padded = np.clip(8 * (db + 100) / 100 - 4, -4, 4).T
    diff = np.abs(ours - zero_padded).max(axis=1)
    assert diff[0] > 1e-3 and diff[-1] > 1e-3
    assert diff[3:-3].max() < 1e-9


def test_window_rows_follow_the_demo_formula_with_truncation_and_clamping() -> None:
    rows = melspec.window_rows(6, 20)
    assert rows.shape == (6, 16) and rows.dtype == np.int64
    # int(80 * (t - 2) / 25) truncates toward zero: -6, -3, 0, 3, 6, 9
    assert rows[0].tolist() == [0] * 7 + list(range(1, 10))
    assert rows[1].tolist() == [0] * 4 + list(range(1, 13))
    assert rows[3].tolist() == list(range(3, 19))
    assert rows[5].tolist() == list(range(9, 20)) + [19] * 5  # clamped at the last mel frame


@pytest.mark.parametrize("frame", [2, 17, 33])
def test_window_t_is_centred_on_video_frame_t(frame: int) -> None:
    windows = melspec.mel_windows(burst(40, frame))
    energy = windows[:, 0].mean(axis=1)  # -> T x 16 mean level per window column
    centre = energy[:, 6:10].mean(axis=1)  # the 4 middle columns (50 ms around the window centre)
    assert int(np.argmax(centre)) == frame
    assert energy[frame, 6:10].min() > 0.0 > energy[frame, [0, 15]].max()


def test_frame_count_is_floor_and_the_tail_is_cut() -> None:
    wav = np.random.default_rng(2).standard_normal(640 * 7 + 639).astype(np.float32)
    windows = melspec.mel_windows(wav)
    assert windows.shape == (7, 1, 80, 16)
    assert np.array_equal(windows, melspec.mel_windows(wav[: 640 * 7]))
    assert np.array_equal(windows, melspec.mel_windows(torch.from_numpy(wav)))
    assert melspec.num_video_frames(len(wav)) == 7
    assert windows.min() >= -4.0 and windows.max() <= 4.0


@pytest.mark.parametrize("samples", [0, 100, 639])
def test_audio_shorter_than_one_frame_names_the_fix(samples: int) -> None:
    with pytest.raises(ValueError, match=r"shorter than one video frame \(640 samples.*pad it"):
        melspec.mel_windows(np.zeros(samples, dtype=np.float32))


def test_stereo_input_is_rejected_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"mono.*read_audio"):
        melspec.mel_windows(np.zeros((2, 16000), dtype=np.float32))


def test_smoothing_kernel_edges_and_batches() -> None:
    t, c = 9, 3
    x = torch.randn(2, t, c, dtype=torch.float64)
    out = melspec.smooth_coefficients(x)
    k = np.float32(melspec.SMOOTHING_KERNEL).astype(np.float64)
    xp = np.pad(x.numpy(), ((0, 0), (1, 1), (0, 0)))
    expected = k[0] * xp[:, :-2] + k[1] * xp[:, 1:-1] + k[2] * xp[:, 2:]
    assert out.shape == x.shape and out.dtype == torch.float64
    assert np.abs(out.numpy() - expected).max() < 1e-12
    assert torch.equal(melspec.smooth_coefficients(x[1]), out[1])  # T x C == one batch element
    ones = melspec.smooth_coefficients(torch.ones(5, 1))
    assert ones[0, 0].item() == pytest.approx(0.72593138, abs=1e-6)  # zero padding attenuates the ends
    assert ones[2, 0].item() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="T x C or B x T x C"):
        melspec.smooth_coefficients(torch.ones(5))


def test_replicate_smoothing_keeps_the_ends_inside_the_weights_range() -> None:
    x = 0.1 * torch.randn(2, 9, 3, dtype=torch.float64) + 5.0  # far from zero, as trained weights can be
    zero, rep = (melspec.smooth_coefficients(x, padding=p) for p in ("zero", "replicate"))
    assert torch.equal(rep[:, 1:-1], zero[:, 1:-1])  # the same kernel inside
    k = melspec.SMOOTHING_KERNEL
    assert torch.allclose(rep[:, 0], (k[0] + k[1]) * x[:, 0] + k[2] * x[:, 1])
    assert torch.allclose(rep[:, -1], k[0] * x[:, -2] + (k[1] + k[2]) * x[:, -1])
    assert (rep >= x.amin(1, keepdim=True) - 1e-9).all() and (rep <= x.amax(1, keepdim=True) + 1e-9).all()
    assert (zero[:, 0] < x.amin(1)).all()  # zero padding pulls the first frame towards 0, out of range
    ones = melspec.smooth_coefficients(torch.ones(5, 2), padding="replicate")
    assert torch.allclose(ones, torch.ones(5, 2))
    with pytest.raises(ValueError, match="padding='reflect'"):
        melspec.smooth_coefficients(x, padding="reflect")
