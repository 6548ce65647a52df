"""LSE: MFCC parity with python_speech_features, the offset search, and the full pipeline on a hand-made case.

What the full-pipeline test proves: with a SyncNet-v2-shaped judge whose weights are set by hand so that a
video window and an audio window embed to the same point when they carry the same on/off pattern (frame
brightness <-> tone loudness, both averaged over the 5-frame / 20-MFCC-column window), our pipeline
(int16 scaling, MFCC, 4-columns-per-frame windowing, zero-padded offset search, min / median) reports
the shift applied to the audio with syncnet_python's sign (+k: audio leads by k frames), and LSE-C
collapses when the audio is replaced by an unrelated one. It does NOT prove agreement with the real
`syncnet_v2.model` numbers; that needs the file (test marked `weights`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edtalk.io import write_video, write_wav
from metrics.functional.sync import (
    _hz_to_mel,
    _mel_to_hz,
    audio_windows,
    mfcc,
    num_windows,
    offset_distances,
    sync_score,
    video_windows,
)
from metrics.judges import JudgeWeightsMissing, SyncNetV2
from metrics.sync import LSE, score_video

SPF = 640  # audio samples per video frame


def test_mfcc_matches_python_speech_features() -> None:
    psf = pytest.importorskip("python_speech_features")
    x = (np.random.default_rng(0).standard_normal(16000 + 777) * 3000).astype(np.int16)
    ref = psf.mfcc(x, 16000)
    ours = mfcc(x)
    assert ours.shape == ref.shape == (104, 13)  # 1 + ceil((16777 - 400) / 160)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("k", [-4, 0, 3])
def test_offset_search_recovers_shift_on_synthetic_features(k: int) -> None:
    g = torch.Generator().manual_seed(0)
    content = torch.randn(80, 16, generator=g)
    video = content[20:60]
    audio = content[20 + k : 60 + k]  # audio window i carries the content of video frame i + k: audio leads
    score = sync_score(offset_distances(video, audio))
    assert score.offset == k
    # only the |k| windows that meet zero padding at the ends add distance
    assert score.lse_d < 0.15 * float(score.mdist.median()) and score.lse_c > 4.0
    unrelated = sync_score(offset_distances(video, torch.randn(40, 16, generator=g)))
    assert unrelated.lse_c < 0.2 * score.lse_c


def test_window_bookkeeping() -> None:
    frames = torch.arange(10.0).reshape(10, 1, 1, 1).expand(10, 3, 2, 2)
    cc = torch.arange(50.0)[None].expand(13, 50)
    v, a = video_windows(frames, 2, 4), audio_windows(cc, 2, 4)
    assert v.shape == (2, 3, 5, 2, 2) and v[1, 0, :, 0, 0].tolist() == [3, 4, 5, 6, 7]
    assert a.shape == (2, 1, 13, 20) and a[1, 0, 0, [0, -1]].tolist() == [12, 31]
    assert num_windows(30, 30 * SPF + 100) == 25 and num_windows(30, 20 * SPF) == 15


# -- a hand-set judge -------------------------------------------------------------------------------
def _averaging(module: nn.Module) -> None:
    """Every conv/linear averages its whole input; BN is the identity; all activations stay >= 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.constant_(m.weight, 1.0 / m.weight[0].numel())
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            m.reset_parameters()


def _any_of_frames_2_to_4(net: SyncNetV2) -> None:
    """Both towers compute "any of frames t+2..t+4 is on" for the window starting at t (up to an affine map).

    Audio: every conv but the last is a centre tap (identity up to channel averaging), so only the
    max-pools mix MFCC cells; the last conv reads map cell (0, 2) = max over MFCC rows 0..4 and columns
    8..14 (frames t+2, t+3 and the first 80 samples of t+4); c0 (log energy, the largest row for our
    audio) wins: feature ~ const + d * any-on. Lips: the first conv sees frames t+2..t+4 and fires only
    when all three are dark; the head negates that.
    """
    convs = [m for m in net.netcnnaud if isinstance(m, nn.Conv2d)]
    for conv in convs[:-1]:
        conv.weight.data.zero_()
        conv.weight.data[:, :, 1, 1] = 1.0 / conv.in_channels
    convs[-1].weight.data.zero_()
    convs[-1].weight.data[:, :, 0, 2] = 1.0 / 256
    net.netcnnaud[1].bias.data.fill_(1000.0)  # keeps every MFCC-derived activation positive
    lip0 = net.netcnnlip[0]
    lip0.weight.data.zero_()
    lip0.weight.data[:, :, 2:5] = -1.0 / (3 * 3 * 49)
    lip0.bias.data.fill_(60.0)  # mean BGR value of frames t+2..t+4 is 38 (all dark), 91, 145 or 198


def _calibrated_head(fc: nn.Sequential, pre: torch.Tensor, sign: float = 1.0) -> None:
    """fc: Linear-BN-ReLU-Linear so that embedding[0] = z-score of the window's mean feature, rest 0."""
    lin0, bn, _, lin1 = fc
    (
        nn.init.zeros_(lin0.weight),
        nn.init.zeros_(lin0.bias),
        nn.init.zeros_(lin1.weight),
        nn.init.zeros_(lin1.bias),
    )
    lin0.weight.data[0], lin0.weight.data[1] = sign / 512, -sign / 512
    f = sign * pre.mean(1)
    bn.running_mean[:2] = torch.stack([f.mean(), -f.mean()])
    bn.running_var[:2] = f.var(unbiased=False)
    lin1.weight.data[0, 0], lin1.weight.data[0, 1] = 1.0, -1.0


def _on_off(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < 0.3).astype(np.int64)  # P(three off in a row) ~ 1/3


def _clip(pattern: np.ndarray, shift: int, t: int = 30, pad: int = 8) -> tuple[torch.Tensor, np.ndarray]:
    """Video frames bright/dark by pattern[pad:pad+t]; audio loud/quiet by pattern[pad+shift:...].

    The audio is one tone at the centre of each of the 26 mel filters: its log filter energies are flat,
    so c1..c12 stay near 0 and only c0 (log energy) carries the on/off pattern, and it stays the largest
    MFCC row (max-pooling in the audio tower keeps it).
    """
    vis = pattern[pad : pad + t]
    frames = torch.where(torch.from_numpy(vis)[:, None, None, None] > 0, 0.6, -0.7).expand(t, 3, 224, 224)
    aud = np.repeat(pattern[pad + shift : pad + shift + t], SPF)
    time = np.arange(t * SPF) / 16000
    centres = _mel_to_hz(np.linspace(0, _hz_to_mel(8000), 28))[1:-1]
    tone = sum(np.sin(2 * np.pi * f * time + i) for i, f in enumerate(centres))
    tone = tone / np.abs(tone).max()
    return frames.clone(), (tone * np.where(aud > 0, 0.5, 0.005)).astype(np.float32)


@pytest.fixture(scope="module")
def sync_judge() -> SyncNetV2:
    net = SyncNetV2()
    _averaging(net)
    frames, wav = _clip(_on_off(60, 0), 0, t=50)
    with torch.no_grad():
        from metrics.functional.sync import audio_to_int16_scale
        from metrics.sync import syncnet_input

        _any_of_frames_2_to_4(net)
        n = num_windows(len(frames), len(wav))
        cc = torch.from_numpy(mfcc(audio_to_int16_scale(wav)).T.astype(np.float32))
        _calibrated_head(
            net.netfclip, net.netcnnlip(video_windows(syncnet_input(frames), 0, n)).flatten(1), -1.0
        )
        _calibrated_head(net.netfcaud, net.netcnnaud(audio_windows(cc, 0, n)).flatten(1))
    return net


def test_full_pipeline_reports_applied_shift(sync_judge: SyncNetV2) -> None:
    pattern = _on_off(60, 0)
    in_sync = score_video(sync_judge, *_clip(pattern, 0))
    assert in_sync.offset == 0
    for k in (3, -2):
        assert score_video(sync_judge, *_clip(pattern, k)).offset == k
    frames, _ = _clip(pattern, 0)
    _, other = _clip(_on_off(60, 7), 0)
    replaced = score_video(sync_judge, frames, other)
    assert in_sync.lse_c > 0.5 and replaced.lse_c < 0.5 * in_sync.lse_c
    assert replaced.lse_d > in_sync.lse_d


def test_lse_metric_averages_videos_and_loads_state_dict(sync_judge: SyncNetV2, tmp_path: Path) -> None:
    path = tmp_path / "syncnet_v2.model"
    torch.save(sync_judge.state_dict(), path)
    metric = LSE(weights=path)
    pattern = _on_off(60, 0)
    scores = []
    for k in (0, 2):
        metric.update(*_clip(pattern, k))
        assert metric.last is not None
        scores.append(metric.last)
    out = metric.compute()
    assert float(out["lse_d"]) == pytest.approx(np.mean([s.lse_d for s in scores]))
    assert float(out["lse_c"]) == pytest.approx(np.mean([s.lse_c for s in scores]))


def test_lse_cli_json_last_line(
    sync_judge: SyncNetV2, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edtalk.cli import main

    weights = tmp_path / "syncnet_v2.model"
    torch.save(sync_judge.state_dict(), weights)
    frames, wav = _clip(_on_off(60, 0), 2)
    video = write_video(tmp_path / "clip.mp4", ((frames.permute(0, 2, 3, 1) + 1) * 127.5).round().byte())
    audio = write_wav(tmp_path / "clip.wav", wav)
    assert (
        main(["lse", str(video), "--audio", str(audio), "--weights", str(weights), "--json", "--no-crop"])
        == 0
    )
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last) == {"offset", "lse_d", "lse_c"} and last["offset"] == 2


def test_syncnet_rejects_foreign_file_and_missing(tmp_path: Path) -> None:
    with pytest.raises(JudgeWeightsMissing, match=r"syncnet_v2\.model"):
        SyncNetV2.from_file(tmp_path / "none.model")
    bad = tmp_path / "bad.model"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match=r"not a syncnet_v2\.model"):
        SyncNetV2.from_file(bad)


@pytest.mark.weights
def test_real_syncnet_v2_file_loads() -> None:
    path = Path(os.environ.get("EDTALK_WEIGHTS", "weights")) / "syncnet_v2.model"
    if not path.is_file():
        pytest.skip(f"needs {path} (syncnet_python download_model.sh)")
    net = SyncNetV2.from_file(path)
    assert net.forward_aud(torch.zeros(1, 1, 13, 20)).shape == (1, 1024)
