"""New audio networks (issue 5): AudioEncoder, probabilistic Audio2Pose, Audio2Exp (tiny configs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edtalk.mel import mel_windows
from edtalk.nn.audio2exp import Audio2Exp, Audio2ExpConfig
from edtalk.nn.audio2lip import Audio2Lip
from edtalk.nn.audio2pose import Audio2Pose, Audio2PoseConfig
from edtalk.nn.audio_encoder import AudioEncoder, AudioEncoderConfig, receptive_field
from tests.learn import below, seed_torch


def speech_like(seconds: float, seed: int = 0) -> torch.Tensor:
    """Mel windows B=1 of an amplitude-modulated noise signal at 16 kHz: 1 x T x 1 x 80 x 16."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    env = 0.5 + 0.5 * np.sin(np.arange(n) / 16000 * 2 * np.pi * 4)
    wav = (rng.standard_normal(n) * 0.2 * env).astype(np.float32)
    return torch.from_numpy(mel_windows(wav))[None]


def test_audio_encoder_shapes_and_audio2lip_init() -> None:
    enc = AudioEncoder(AudioEncoderConfig(dim=32)).eval()
    a2l = Audio2Lip().eval()
    enc.load_audio2lip(a2l)
    mel = torch.rand(2, 3, 1, 80, 16) * 8 - 4
    with torch.no_grad():
        feats = enc(mel)
        assert torch.equal(enc.audio_encoder(mel[0]), a2l.audio_encoder(mel[0]))
    assert feats.shape == (2, 3, 32)
    with pytest.raises(ValueError, match="5 channels"):
        AudioEncoder(AudioEncoderConfig(channels=(4, 8, 16)))


def test_audio2pose_samples_match_the_audio_length_and_differ_across_seeds() -> None:
    model = Audio2Pose(Audio2PoseConfig.tiny()).eval()
    mel = speech_like(1.3)  # floor(1.3 s * 25) = 32 frames
    assert mel.shape[1] == 32

    def draw(seed: int, temperature: float = 1.0) -> torch.Tensor:
        return model.sample(mel, temperature, torch.Generator().manual_seed(seed))

    a, b, a_again = draw(0), draw(1), draw(0)
    assert a.shape == (1, 32, 6) and torch.isfinite(a).all()
    assert torch.equal(a, a_again)
    assert (a - b).abs().max() > 1e-3
    # temperature scales the spread around the prior mean; 0 gives the mean whatever the seed
    assert torch.equal(draw(0, 0.0), draw(1, 0.0))
    spread = (draw(0, 0.5) - draw(0, 0.0)).abs().mean() / (a - draw(0, 0.0)).abs().mean()
    assert 0.2 < spread < 0.8
    with pytest.raises(ValueError, match="temperature"):
        model.sample(mel, -1.0)


@pytest.mark.parametrize("frames", [1, 7, 12])
def test_audio2pose_any_length_and_reference_pose(frames: int) -> None:
    model = Audio2Pose(Audio2PoseConfig.tiny()).eval()
    mel = torch.rand(2, frames, 1, 80, 16) * 8 - 4
    ref = torch.randn(2, 6)
    out = model.sample(mel, generator=torch.Generator().manual_seed(0), ref_pose=ref)
    assert out.shape == (2, frames, 6)
    same_noise = model.sample(mel, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(out, same_noise)  # the source pose conditions the result


@pytest.mark.learns
def test_audio2pose_loss_trains_every_part() -> None:
    seed_torch()
    model = Audio2Pose(Audio2PoseConfig.tiny())
    mel = torch.rand(2, 10, 1, 80, 16) * 8 - 4
    t = torch.linspace(0, 2, 10)
    pose = torch.stack([torch.sin(t * (k + 1))[:, None].expand(10, 6) * (k + 1) for k in range(2)])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        out = model.loss(mel, pose)
        opt.zero_grad()
        out["loss"].backward()
        if not losses:
            assert all(
                p.grad is not None for n, p in model.named_parameters() if not n.startswith("ref_in")
            ), "every network part (audio, posterior, prior, decoder) must receive gradients"
        opt.step()
        losses.append(out["loss"].item())
    assert set(out) == {"loss", "recon", "velocity", "kl", "pred"} and out["pred"].shape == pose.shape
    below("loss last/first", losses[-1] / losses[0], 0.5)
    with pytest.raises(ValueError, match="pose must be B x T x 6"):
        model.loss(mel, pose[:, :5])


@pytest.mark.learns
def test_audio2exp_shapes_masked_targets_and_training() -> None:
    seed_torch()
    model = Audio2Exp(Audio2ExpConfig.tiny())
    mel = torch.rand(3, 6, 1, 80, 16) * 8 - 4
    pred = model.eval()(mel)
    assert pred.exp.shape == (3, 10) and pred.logits.shape == (3, 8)
    model.train()
    exp = torch.randn(3, 6, 10)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[0, 3:] = False
    emotion = torch.tensor([0, 4, 7])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(20):
        out = model.loss(mel, exp, emotion, mask)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else out["loss"].item()
    below("loss last/first", out["loss"].item() / first, 0.5)
    with torch.no_grad():
        out = model.eval().loss(mel, exp, emotion, mask)
    target = torch.stack([exp[0, :3].mean(0), exp[1].mean(0), exp[2].mean(0)])  # masked frames left out
    assert torch.allclose(out["exp"], torch.nn.functional.mse_loss(out["pred"], target))
    assert torch.allclose(out["pred"], model(mel, mask).exp)
    no_labels = model.loss(mel, exp.mean(1))
    assert float(no_labels["emotion"]) == 0.0 and torch.equal(no_labels["loss"], no_labels["exp"])


def test_configs_round_trip_through_dicts() -> None:
    for cfg in (Audio2PoseConfig.tiny(), Audio2ExpConfig.tiny(), Audio2PoseConfig()):
        d = cfg.to_dict()
        d["audio"]["channels"] = list(d["audio"]["channels"])  # as YAML would give it back
        assert type(cfg).from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown Audio2PoseConfig keys"):
        Audio2PoseConfig.from_dict({"hiden": 3})
    assert receptive_field(4) == 31 and receptive_field(0) == 1
