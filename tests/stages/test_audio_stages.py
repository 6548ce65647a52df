"""Audio stages (issue 5): syncnet, audio2mouth, audio2pose, audio2exp, emotion_classifier.

Each stage trains with a real Lightning Trainer on a fixed batch and must overfit it; the SyncNet
pairing is checked on real mel features; exports load where inference and evaluation load them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from edtalk.config import GeneratorConfig
from edtalk.losses import VGGPyramidLoss
from edtalk.losses.sync import SyncLoss, crop_boxes, crop_resize, shifted_starts, sync_boxes, sync_pair
from edtalk.mel import mel_windows
from edtalk.nn.audio2lip import Audio2Lip
from edtalk.nn.audio2pose import Audio2Pose, Audio2PoseConfig
from edtalk.nn.audio_encoder import AudioEncoderConfig
from edtalk.nn.emotion import EmotionClassifier, EmotionClassifierConfig
from edtalk.nn.generator import Generator
from edtalk.nn.syncnet import SyncNet
from edtalk.stages.audio2exp import Audio2ExpLoss, Audio2ExpStage, Audio2ExpStageConfig
from edtalk.stages.audio2exp import network_config as exp_config
from edtalk.stages.audio2mouth import Audio2MouthConfig, Audio2MouthStage
from edtalk.stages.audio2pose import Audio2PoseStage, Audio2PoseStageConfig
from edtalk.stages.audio2pose import network_config as pose_config
from edtalk.stages.emotion_classifier import EmotionClassifierStage, EmotionClassifierStageConfig
from edtalk.stages.emotion_classifier import network_config as emotion_config
from edtalk.stages.params import fingerprint
from edtalk.stages.supervised import load_network, scaled
from edtalk.stages.syncnet import WAV2LIP_CHANNELS, SyncNetStage, SyncNetStageConfig, jitter_pair
from tests.learn import above, below, learn_seed, seed_torch
from tests.stages.helpers import FixedBatchData, smooth_images, trainer

SIZE = 64
BOX = (24.0, 38.0, 40.0, 50.0)  # mouth box of the synthetic face (x1, y1, x2, y2)
# its face box in the built-in data's proportions (`face_boxes` there: mouth box 0.48-0.72 of the box width,
# mouth centre at 0.64-0.74 of its height): the mouth (rows 39-49) lies in the lower half (rows 36-54)
FACE = (16.0, 18.0, 48.0, 54.0)
TINY = 0.125


# -- a synthetic talking clip: mouth opening drives both the frames and the mel windows -----------------
def talking_batch(b: int = 2, t: int = 15, seed: int = 0, ramps: bool = False) -> dict[str, torch.Tensor]:
    """Frames whose dark mouth opens with a(t) and mel windows whose energy follows a over the same frames.

    a(t) is uniform noise per frame, or with `ramps` a linear opening or closing over the clip (so any two
    disjoint 5-frame windows differ in mean opening by >= 5/(T-1): in sync vs shifted is learnable fast).
    """
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(b, t, generator=g)  # -> B x T mouth opening in [0, 1]
    if ramps:
        up = torch.rand(b, 1, generator=g) < 0.5
        line = torch.linspace(0, 1, t)[None]  # -> 1 x T
        a = torch.where(up, line, 1 - line) + 0.05 * (a - 0.5)  # -> B x T, jitter +-0.025
    frames = smooth_images(b, seed)[:, None].repeat(1, t, 1, 1, 1).clone()  # -> B x T x 3 x S x S
    x1, x2 = int(BOX[0]), int(BOX[2])
    for i in range(b):
        for k in range(t):
            h = 1 + int(10 * a[i, k])
            frames[i, k, :, 44 - h // 2 : 44 + (h + 1) // 2, x1:x2] = -1.0
    # window k covers frames k-2 .. k+2: column j of 16 <- frame k - 2 + floor(5 j / 16)
    cols = torch.arange(t)[:, None] - 2 + (5 * torch.arange(16) // 16)[None]  # -> T x 16
    energy = a[:, cols.clamp(0, t - 1)]  # -> B x T x 16
    bands = torch.linspace(1.0, 0.3, 80)[:, None]  # -> 80 x 1
    mel = (-4 + 8 * energy[:, :, None, None, :] * bands).clamp(-4, 4)  # -> B x T x 1 x 80 x 16
    return {
        "frames": frames,
        "mel": mel + 0.05 * torch.randn(mel.shape, generator=g),
        "identity": frames[:, 0].clone(),
        "bbox": torch.tensor(BOX).expand(b, t, 4).clone(),
        "face_box": torch.tensor(FACE).expand(b, t, 4).clone(),
        "emotion": torch.arange(b) % 8,
        "mouth": a[:, :, None] * torch.linspace(-2, 2, 20) + 0.05 * torch.randn(b, t, 20, generator=g),
        "pose": torch.randn(b, t, 6, generator=g).cumsum(1) * 0.2,
        "exp": torch.randn(b, 1, 10, generator=g).expand(b, t, 10).clone(),
    }


class Recorder(Callback):
    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, *args) -> None:  # type: ignore[no-untyped-def]
        self.rows.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")})


def fit_fixed(stage, batch: dict[str, torch.Tensor], steps: int, root: Path) -> list[dict[str, float]]:  # type: ignore[no-untyped-def]
    rec = Recorder()
    trainer(root, steps, callbacks=[rec], log_every_n_steps=1).fit(stage, datamodule=FixedBatchData(batch))
    return rec.rows


def first_last(rows: list[dict[str, float]], key: str, n: int = 3) -> tuple[float, float]:
    vals = [r[key] for r in rows if key in r]
    return float(np.mean(vals[:n])), float(np.mean(vals[-n:]))


# -- SyncNet pairing ------------------------------------------------------------------------------------
@pytest.mark.parametrize("crop", ["face", "mouth"])
def test_sync_audio_and_visual_windows_cover_the_same_frames(crop: str) -> None:
    """Frames s..s+4 are paired with the mel window of frames s..s+4 (not s-2..s+2 as upstream).

    Real mel features (edtalk.mel.mel_windows) of a wav that is loud exactly during video frames
    s..s+4 and silent elsewhere; frame k of the clip is a flat image of grey level k/20.
    """
    t, s = 24, 10
    rng = np.random.default_rng(0)
    wav = np.zeros(t * 640, np.float32)
    wav[s * 640 : (s + 5) * 640] = 0.5 * rng.standard_normal(5 * 640)  # loud during frames s..s+4
    mel = torch.from_numpy(mel_windows(wav)).float()[None]  # -> 1 x T x 1 x 80 x 16
    assert mel.shape[1] == t
    frames = (torch.arange(t).float() / 20 - 0.5).view(1, t, 1, 1, 1).expand(1, t, 3, SIZE, SIZE)
    boxes = crop_boxes(
        {"face_box": torch.tensor(FACE).expand(1, t, 4), "bbox": torch.tensor(BOX).expand(1, t, 4)}, crop
    )

    window, faces = sync_pair(frames, boxes, mel, torch.tensor([s]), crop=crop)

    # visual side: the five crops are frames s..s+4, in order
    levels = faces.view(5, 3, 48, 96)[:, :, 10:-10, 10:-10].mean(dim=(1, 2, 3))
    assert torch.allclose(levels, torch.arange(s, s + 5).float() / 20 - 0.5, atol=1e-5)
    # audio side: every one of the window's 16 mel frames lies in the loud span (silence is -4)
    loud = window[0, 0].mean(0) > -2.0  # per mel frame (column)
    assert bool(loud.all()), loud
    # upstream's pairing (window s: frames s-2..s+2) sees silence for the first 2/5 of its columns
    upstream = mel[0, s, 0].mean(0) > -2.0
    assert int(upstream.sum()) <= 11


def test_sync_crops_put_the_mouth_in_the_lower_half() -> None:
    img = -torch.ones(1, 3, SIZE, SIZE)
    x1, y1, x2, y2 = (int(v) for v in BOX)
    img[:, :, y1:y2, x1:x2] = 1.0  # the mouth box, white
    box = sync_boxes(torch.tensor(BOX).view(1, 1, 4).expand(1, 5, 4))[0, :1]
    crop = crop_resize(img, box)[0, 0]  # -> 96 x 96
    white = (crop > 0).float()
    rows = torch.nonzero(white.sum(1)).flatten()
    cols = torch.nonzero(white.sum(0)).flatten()
    assert rows.min() >= 48, "the mouth must be in the lower half"
    assert abs(float(rows.float().mean()) - 72) < 3 and abs(float(cols.float().mean()) - 47.5) < 3
    assert 40 <= int(cols.numel()) <= 56  # box width / (2 box widths) of 96


def test_shifted_windows_are_far_enough() -> None:
    start = torch.tensor([0, 5, 10])
    shifted = shifted_starts(start, 15, 5, torch.Generator().manual_seed(0))
    assert bool(((shifted - start).abs() >= 5).all()) and int(shifted.max()) <= 10
    with pytest.raises(ValueError, match="at least 15 frames"):
        shifted_starts(torch.tensor([4]), 12, 5)


# -- stages overfit a fixed batch -----------------------------------------------------------------
def tiny_syncnet() -> tuple[SyncNet, dict[str, list[int]]]:
    channels = list(scaled(WAV2LIP_CHANNELS, TINY))
    return SyncNet(tuple(channels)), {"channels": channels}


@pytest.mark.learns
@pytest.mark.parametrize("crop", ["face", "mouth"])
def test_syncnet_stage_learns_in_sync_vs_shifted(tmp_path: Path, crop: str) -> None:
    """Mouths that open (or close) over the clip: an in-sync window matches the mouth's mean opening, a
    shifted one does not. From scratch at lr 1e-3 (3e-3 stalls near chance for some initialisations).
    Both crops: the lower half of the face box (default) and the mouth-box square (option)."""
    seed_torch()
    net, net_cfg = tiny_syncnet()
    cfg = SyncNetStageConfig(width=TINY, min_shift=5, diagnostics_every_n_steps=0, sync_crop=crop)
    cfg.optim.lr = 1e-3
    stage = SyncNetStage(net, net_cfg, cfg)
    batch = talking_batch(4, 15, seed=learn_seed(1), ramps=True)
    rows = fit_fixed(stage, batch, 120, tmp_path)
    loss0, loss1 = first_last(rows, "train/loss", 10)
    below("loss last/first", loss1 / loss0, 0.8)
    stage.eval()
    with torch.no_grad():  # seeded in-sync / shifted pairs, as in validation
        accs = []
        for i in range(8):
            stage.val_index = i
            accs.append(float(stage.compute(batch, train=False)["accuracy"]))
    above("val accuracy", float(np.mean(accs)), 0.7)
    # the export is an edtalk checkpoint that load_network (and audio2mouth's model.syncnet) reads
    loaded = load_network(tmp_path / "checkpoints" / "syncnet.pt", "syncnet")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))


def test_sync_jitter_changes_colour_and_loudness_per_clip_not_timing() -> None:
    """`model.augment`: one colour gain/offset per clip and channel for all 5 frames, one loudness offset per
    clip for its in-sync and shifted windows alike (so the pair still differs only in timing); 0: unchanged."""
    torch.manual_seed(0)
    faces = torch.rand(6, 15, 48, 96) - 0.5  # in [-0.5, 0.5]: no clamping at strength 1
    windows = (torch.rand(6, 1, 80, 16) * 4 - 2, torch.rand(6, 1, 80, 16) * 4 - 2)
    same, (w0, w1) = jitter_pair(faces, windows, 0.0)
    assert torch.equal(same, faces) and torch.equal(w0, windows[0]) and torch.equal(w1, windows[1])
    jittered, (j0, j1) = jitter_pair(faces, windows, 1.0)
    loud = (j0 - windows[0]).flatten(1)
    assert torch.allclose(loud, loud[:, :1].expand_as(loud)) and loud.abs().max() <= 1.0
    assert torch.allclose(j1 - windows[1], j0 - windows[0])  # the same offset for both windows of a clip
    assert loud[:, 0].std() > 0.1  # and another one per clip
    a, b = faces.view(6, 5, 3, -1), jittered.view(6, 5, 3, -1)
    gain = ((b - b.mean(-1, keepdim=True)) * (a - a.mean(-1, keepdim=True))).sum(-1) / (
        (a - a.mean(-1, keepdim=True)) ** 2
    ).sum(-1)  # least-squares slope per clip, frame and channel
    assert torch.allclose(gain, gain[:, :1].expand_as(gain), atol=1e-4)  # one per clip and channel
    assert ((gain - 1).abs() <= 0.3 + 1e-4).all() and gain[:, 0].std() > 0.02


def test_syncnet_validation_averages_its_seeded_windows(tmp_path: Path) -> None:
    """`model.val_windows` K: val/accuracy is the mean over K seeded (window, shift) choices per clip, batch
    b's choices seeded b*K .. b*K+K-1 (K = 1: as every stage, seeded by the batch index)."""
    seed_torch()
    net, net_cfg = tiny_syncnet()
    stage = SyncNetStage(
        net, net_cfg, SyncNetStageConfig(width=TINY, diagnostics_every_n_steps=0, val_windows=4)
    )
    batch = talking_batch(4, 15, seed=0, ramps=True)
    out = trainer(tmp_path, 1, limit_val_batches=1).validate(
        stage, datamodule=FixedBatchData(batch), verbose=False
    )
    stage.eval()  # as in validation (batch norm's running statistics)
    with torch.no_grad():
        each = []
        for j in range(4):
            stage.val_index = j
            each.append(stage.compute(batch, train=False))
    for key in ("accuracy", "loss", "p_sync"):
        assert out[0][f"val/{key}"] == pytest.approx(float(np.mean([float(o[key]) for o in each])), abs=1e-6)
    assert len({float(o["loss"]) for o in each}) > 1  # the choices differ
    with pytest.raises(ValueError, match=r"model.val_windows=0"):
        SyncNetStageConfig(val_windows=0)
    with pytest.raises(ValueError, match=r"model.augment=-1"):
        SyncNetStageConfig(augment=-1.0)


def tiny_audio2mouth(**loss: float) -> Audio2MouthStage:
    seed_torch()
    gen = Generator(GeneratorConfig.tiny("lip_pose"))
    channels = scaled((32, 64, 128, 256, 512), TINY)
    net = Audio2Lip(20, channels)
    cfg = Audio2MouthConfig(width=TINY, diagnostics_every_n_steps=0, samples_every_n_steps=0)
    cfg.optim.lr = 3e-3
    for k, v in loss.items():
        setattr(cfg.loss, k, v)
    expert, _ = tiny_syncnet()
    perceptual = VGGPyramidLoss(init="random", width=0.125) if cfg.loss.vgg > 0 else None
    sync = SyncLoss(expert.eval()) if cfg.loss.sync > 0 else None
    return Audio2MouthStage(net, {"mouth_dim": 20, "channels": list(channels)}, gen, perceptual, sync, cfg)


@pytest.mark.learns
def test_audio2mouth_overfits_and_keeps_the_generator_frozen(tmp_path: Path) -> None:
    stage = tiny_audio2mouth(coeff=10.0)  # the random tiny generator and expert make image terms noisy
    frozen = fingerprint(stage.generator, [n for n, _ in stage.generator.named_parameters()])
    expert = fingerprint(stage.sync.syncnet, [n for n, _ in stage.sync.syncnet.named_parameters()])  # type: ignore[union-attr]
    rows = fit_fixed(stage, talking_batch(2, 5, seed=learn_seed(1)), 40, tmp_path)
    c0, c1 = first_last(rows, "train/coeff")
    l0, l1 = first_last(rows, "train/loss")
    below("coeff last/first", c1 / c0, 0.5)
    below("loss last/first", l1 / l0, 1.0)
    for term in ("temporal", "l1", "vgg", "mouth_l1", "sync"):
        assert math.isfinite(rows[-1][f"train/{term}"]), term
    assert fingerprint(stage.generator, frozen) == frozen  # the generator did not move
    assert fingerprint(stage.sync.syncnet, expert) == expert  # type: ignore[union-attr]
    assert not any(k.startswith(("sync.", "perceptual.")) for k in stage.state_dict())  # judges not saved
    from edtalk.pipeline import load_audio_model

    model = load_audio_model(tmp_path / "checkpoints" / "audio2mouth.pt", "audio2lip")
    mel = talking_batch(1, 5)["mel"]
    assert torch.allclose(model(mel), stage.net.eval()(mel), atol=1e-6)


def test_audio2mouth_decoder_finetune_moves_only_the_decoder(tmp_path: Path) -> None:
    stage = tiny_audio2mouth(vgg=0.0, sync=0.0)
    stage.cfg.trainable = ["synthesis.*"]
    from edtalk.stages.params import apply_trainable

    _, stage.frozen_names = apply_trainable(stage.generator, stage.cfg.trainable)
    names = [n for n, _ in stage.generator.named_parameters()]
    before = fingerprint(stage.generator, names)
    fit_fixed(stage, talking_batch(2, 5), 3, tmp_path)
    after = fingerprint(stage.generator, names)
    changed = {n for n in names if before[n] != after[n]}
    assert changed and all(n.startswith("synthesis.") for n in changed)


def test_audio2mouth_needs_the_expert_for_the_sync_loss() -> None:
    stage = tiny_audio2mouth(sync=0.0)
    cfg = Audio2MouthConfig()
    cfg.loss.vgg = 0.0
    with pytest.raises(ValueError, match=r"model\.syncnet"):
        Audio2MouthStage(stage.net, stage.net_config, stage.generator, None, None, cfg)


@pytest.mark.learns
def test_audio2pose_overfits_and_samples_differ_across_seeds(tmp_path: Path) -> None:
    seed_torch()
    network = Audio2PoseConfig(
        audio=AudioEncoderConfig(dim=128), hidden=128, context_layers=2, latent_dim=4, latent_stride=2
    )
    cfg = Audio2PoseStageConfig(width=TINY, network=network)
    cfg.diagnostics_every_n_steps, cfg.optim.lr = 0, 3e-3
    net_cfg = pose_config(cfg)
    stage = Audio2PoseStage(Audio2Pose(net_cfg), net_cfg.to_dict(), cfg)
    rows = fit_fixed(stage, talking_batch(2, 20, seed=learn_seed(1)), 50, tmp_path)
    r0, r1 = first_last(rows, "train/recon")
    below("recon last/first", r1 / r0, 0.5)

    from edtalk.pipeline import load_audio_model

    model = load_audio_model(tmp_path / "checkpoints" / "audio2pose.pt", "audio2pose")
    assert isinstance(model, Audio2Pose)
    mel = talking_batch(1, 37, seed=3)["mel"]  # 37 frames of audio
    ref = torch.zeros(1, 6)

    def draw(seed: int, temperature: float = 1.0) -> torch.Tensor:
        return model.sample(mel, temperature, torch.Generator().manual_seed(seed), ref_pose=ref)

    a, b = draw(0), draw(1)
    assert a.shape == (1, 37, 6) and b.shape == (1, 37, 6)
    assert (a - b).abs().mean() > 1e-3, "different seeds must give different head motions"
    assert torch.equal(a, draw(0)), "the same seed must give the same motion"
    assert torch.allclose(draw(0, 0.0), draw(1, 0.0)), "temperature 0 is the prior mean"
    spread = (draw(0, 2.0) - draw(0, 0.0)).abs().mean() / (a - draw(0, 0.0)).abs().mean()
    assert spread > 1.2, "higher temperature must spread draws further from the mean"


@pytest.mark.learns
def test_audio2exp_overfits_with_the_emotion_loss(tmp_path: Path) -> None:
    from edtalk.nn.audio2exp import Audio2Exp, Audio2ExpConfig

    seed_torch()
    network = Audio2ExpConfig(audio=AudioEncoderConfig(dim=128), hidden=128, context_layers=1)
    cfg = Audio2ExpStageConfig(width=TINY, network=network, loss=Audio2ExpLoss(emotion=0.5))
    cfg.diagnostics_every_n_steps, cfg.optim.lr = 0, 3e-3
    net_cfg = exp_config(cfg)
    stage = Audio2ExpStage(Audio2Exp(net_cfg), net_cfg.to_dict(), cfg)
    batch = talking_batch(4, 12, seed=learn_seed(1))
    batch["emotion"] = torch.tensor([0, 4, -1, 6])  # one clip without a label
    rows = fit_fixed(stage, batch, 40, tmp_path)
    e0, e1 = first_last(rows, "train/exp")
    c0, c1 = first_last(rows, "train/emotion")
    below("exp last/first", e1 / e0, 0.3)
    below("emotion last/first", c1 / c0, 0.5)
    above("last train accuracy", rows[-1]["train/accuracy"], 0.99)


@pytest.mark.learns
def test_emotion_classifier_overfits_and_metrics_load_its_export(tmp_path: Path) -> None:
    seed_torch()
    network = EmotionClassifierConfig(input_size=32, dropout=0.0)
    cfg = EmotionClassifierStageConfig(width=TINY, network=network)
    cfg.diagnostics_every_n_steps, cfg.optim.lr = 0, 1e-2
    net_cfg = emotion_config(cfg)
    stage = EmotionClassifierStage(EmotionClassifier(net_cfg), net_cfg.to_dict(), cfg)
    frames = smooth_images(4 * 4, seed=learn_seed(5)).view(4, 4, 3, SIZE, SIZE)
    batch = {"frames": frames, "emotion": torch.tensor([0, 4, 5, 6])}
    rows = fit_fixed(stage, batch, 40, tmp_path)
    l0, l1 = first_last(rows, "train/loss")
    below("loss last/first", l1 / l0, 0.3)
    above("last train accuracy", rows[-1]["train/accuracy"], 0.99)

    from metrics.runner import load_emotion_classifier

    judge = load_emotion_classifier(tmp_path / "checkpoints" / "emotion_classifier.pt")
    with torch.no_grad():
        assert torch.allclose(judge(frames), stage.net.eval()(frames), atol=1e-6)
    assert not any(p.requires_grad for p in judge.parameters())


# -- the whole chain from a fresh run root --------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["audio2mouth", "audio2pose"])
def test_fit_debug_builds_every_dependency(experiment: str, tmp_path: Path) -> None:
    """`edtalk fit STAGE --debug`: reconstruct -> mouth_pose -> extracted coefficients (-> syncnet) -> STAGE."""
    from edtalk.cli import main

    assert main(["fit", experiment, f"run.root={tmp_path}", "--debug"]) == 0
    assert (tmp_path / experiment / "debug" / "checkpoints" / f"{experiment}.pt").is_file()
    assert (tmp_path / "mouth_pose" / "debug" / "checkpoints" / "last.ckpt").is_file()
    assert list((tmp_path / experiment / "debug-data").glob("*.coeffs.npz"))
    if experiment == "audio2mouth":
        assert (tmp_path / "syncnet" / "debug" / "checkpoints" / "syncnet.pt").is_file()


def anchored_audio2exp(anchor: float, from_emotion: bool = False) -> Audio2ExpStage:
    """A tiny audio2exp stage regressing anchors of `anchor` (`model.exp_anchor`; with `from_emotion` its
    expression is the posterior's mix of them), torch seeded."""
    from edtalk.nn.audio2exp import Audio2Exp, Audio2ExpConfig

    seed_torch()
    network = Audio2ExpConfig(audio=AudioEncoderConfig(dim=128), hidden=128, context_layers=1)
    cfg = Audio2ExpStageConfig(width=TINY, network=network, exp_anchor=anchor, exp_from_emotion=from_emotion)
    net_cfg = exp_config(cfg)
    return Audio2ExpStage(Audio2Exp(net_cfg), net_cfg.to_dict(), cfg)


def test_audio2exp_regresses_the_anchor_of_labelled_clips() -> None:
    """`model.exp_anchor` (ours, = the expression stage's): a labelled clip's target is its emotion's anchor, an
    unlabelled clip's the mean of its extracted weights."""
    from edtalk.stages.expression import emotion_anchors

    stage = anchored_audio2exp(2.0)
    cfg = stage.cfg
    batch = talking_batch(4, 12, seed=3)
    batch["emotion"] = torch.tensor([0, 4, -1, 5])
    with torch.no_grad():
        out = stage.net(stage._audio(batch))
        target = batch["exp"].mean(1)
        anchors = emotion_anchors(batch["emotion"], target.shape[1], 2.0)
        assert anchors is not None
        target = torch.cat([anchors[:2], target[2:3], anchors[3:]])
        expected = torch.nn.functional.mse_loss(out.exp, target)
        assert torch.allclose(stage.compute(batch, train=False)["exp"], expected)
        cfg.exp_anchor = 0.0
        plain = torch.nn.functional.mse_loss(out.exp, batch["exp"].mean(1))
        assert torch.allclose(stage.compute(batch, train=False)["exp"], plain)


def test_audio2exp_regresses_anchors_alone_without_coefficients() -> None:
    """`data.coefficients=false` (the demo: audio2exp trains from the start, beside the visual stages): with
    `model.exp_anchor` every clip's target is its emotion's anchor; an unlabelled clip, or no anchors, is an
    error that names the fix."""
    from edtalk.stages.expression import emotion_anchors

    stage = anchored_audio2exp(2.0)
    cfg = stage.cfg
    batch = talking_batch(4, 12, seed=3)
    del batch["exp"], batch["mouth"], batch["pose"]
    batch["emotion"] = torch.tensor([0, 4, 1, 5])
    with torch.no_grad():
        out = stage.net(stage._audio(batch))
        anchors = emotion_anchors(batch["emotion"], stage.net.cfg.exp_dim, 2.0)
        assert anchors is not None and anchors.abs().sum() > 0
        expected = torch.nn.functional.mse_loss(out.exp, anchors)
        assert torch.allclose(stage.compute(batch, train=False)["exp"], expected)
        batch["emotion"] = torch.tensor([0, 4, -1, 5])
        with pytest.raises(KeyError, match="emotion labels on every clip"):
            stage.compute(batch, train=False)
        cfg.exp_anchor = 0.0
        with pytest.raises(KeyError, match="extract-coefficients"):
            stage.compute(batch, train=False)


@pytest.mark.slow
def test_fit_debug_audio2exp_on_anchors_alone_trains_no_generator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`edtalk fit audio2exp --debug data.coefficients=false requires=null model.exp_anchor=3` reads only the
    built-in shards: no generator stage runs and no sidecars are written; without the anchor it stops."""
    from edtalk.cli import main

    args = ["fit", "audio2exp", f"run.root={tmp_path}", "--debug", "data.coefficients=false", "requires=null"]
    assert main([*args, "model.exp_anchor=3", "trainer.max_steps=2"]) == 0
    assert (tmp_path / "audio2exp" / "debug" / "checkpoints" / "audio2exp.pt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio2exp"]
    assert not list(tmp_path.rglob("*.coeffs.npz"))
    capsys.readouterr()
    assert main([*args, "run.name=plain", "trainer.max_steps=2"]) == 2
    assert "set model.exp_anchor" in capsys.readouterr().err


class LearningRates(Callback):
    """The optimiser's rate at the start of every training step."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_supervised_schedule_follows_its_curve_over_max_steps(tmp_path: Path, schedule: str) -> None:
    """`model.optim.schedule`: constant keeps the rate; cosine starts at it, is at half of it at mid-run and
    falls towards 0 by `trainer.max_steps` (a real Trainer, the rate read at each step)."""
    network = EmotionClassifierConfig(input_size=32, dropout=0.0)
    cfg = EmotionClassifierStageConfig(width=TINY, network=network)
    cfg.diagnostics_every_n_steps, cfg.optim.lr, cfg.optim.schedule = 0, 1e-2, schedule
    net_cfg = emotion_config(cfg)
    stage = EmotionClassifierStage(EmotionClassifier(net_cfg), net_cfg.to_dict(), cfg)
    batch = {
        "frames": smooth_images(2 * 2, seed=0).view(2, 2, 3, SIZE, SIZE),
        "emotion": torch.tensor([0, 4]),
    }
    rates = LearningRates()
    trainer(tmp_path, 8, callbacks=[rates]).fit(stage, datamodule=FixedBatchData(batch))
    assert len(rates.rates) == 8
    if schedule == "constant":
        assert rates.rates == [1e-2] * 8
        return
    expected = [1e-2 * 0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    assert rates.rates == pytest.approx(expected, rel=1e-6)
    assert rates.rates[4] == pytest.approx(5e-3) and rates.rates[-1] < 0.05 * rates.rates[0]


def test_supervised_schedule_rejects_an_unknown_name() -> None:
    cfg = EmotionClassifierStageConfig(width=TINY)
    with pytest.raises(ValueError, match=r"model\.optim\.schedule='step'.*constant.*cosine"):
        cfg.optim = type(cfg.optim)(schedule="step")


def test_audio2exp_from_emotion_mixes_the_anchors_by_the_posterior() -> None:
    """`model.exp_from_emotion` (ours): the expression weights are softmax(logits) @ the anchor table (anchor x
    the unit vector of each MEAD id, neutral zero), the network has no regression head (nothing unused under
    DDP), the file rebuilds it, and it needs `model.exp_anchor`."""
    from edtalk.nn.audio2exp import Audio2Exp, Audio2ExpConfig
    from edtalk.nn.emotion import EMOTIONS, emotion_anchor_table
    from edtalk.stages.expression import emotion_anchors

    stage = anchored_audio2exp(3.0, from_emotion=True)
    net = stage.net
    assert net.cfg.anchor == 3.0 and net.exp_head is None
    assert not any(k.startswith("exp_head") or k == "anchors" for k in net.state_dict())
    table = emotion_anchor_table(net.cfg.exp_dim, 3.0)
    labels = torch.arange(len(EMOTIONS))
    assert torch.equal(table, emotion_anchors(labels, net.cfg.exp_dim, 3.0))
    assert table[EMOTIONS.index("neutral")].abs().sum() == 0
    batch = talking_batch(3, 12, seed=2)
    with torch.no_grad():
        out = net(stage._audio(batch))
        assert torch.allclose(out.exp, out.logits.softmax(-1) @ table, atol=1e-6)
        rebuilt = Audio2Exp(Audio2ExpConfig.from_dict(stage.net_config))
        rebuilt.load_state_dict(net.state_dict())
        assert torch.allclose(rebuilt(stage._audio(batch)).exp, out.exp, atol=1e-6)
    sure = torch.full((1, len(EMOTIONS)), -30.0)
    sure[0, EMOTIONS.index("sad")] = 30.0  # a confident read gives that emotion's anchor exactly
    assert torch.allclose(sure.softmax(-1) @ table, table[EMOTIONS.index("sad")][None], atol=1e-6)
    with pytest.raises(
        ValueError, match=r"model\.exp_from_emotion=true mixes the emotions. anchors: set model\.exp_anchor"
    ):
        exp_config(Audio2ExpStageConfig(exp_from_emotion=True))
    with pytest.raises(ValueError, match=r"exp_dim \(4\) must be >= num_emotions \(8\)"):
        Audio2ExpConfig(exp_dim=4, anchor=3.0)


def test_audio2exp_top_anchor_at_inference_mixes_in_training() -> None:
    """`anchor_pick: top` (ours): in eval mode the weights are the most probable emotion's anchor exactly; in
    training the posterior's mix, as with "mix" (same loss, same gradients); a bad name is refused."""
    from dataclasses import replace

    from edtalk.nn.audio2exp import Audio2Exp, Audio2ExpConfig
    from edtalk.nn.emotion import emotion_anchor_table

    stage = anchored_audio2exp(3.0, from_emotion=True)
    top = Audio2Exp(replace(stage.net.cfg, anchor_pick="top"))
    top.load_state_dict(stage.net.state_dict())
    table = emotion_anchor_table(top.cfg.exp_dim, 3.0)
    mel = stage._audio(talking_batch(3, 12, seed=2))
    with torch.no_grad():
        picked = top.eval()(mel)
        assert torch.equal(picked.exp, table[picked.logits.argmax(-1)])
        mixed = stage.net.eval()(mel).exp
        assert (picked.exp - mixed).abs().max() > 1e-3  # a random network is unsure: the mix is no anchor
        assert torch.allclose(top.train()(mel).exp, stage.net.train()(mel).exp, atol=1e-6)
    with pytest.raises(ValueError, match=r"anchor_pick must be one of \('mix', 'top'\), got 'max'"):
        Audio2ExpConfig(anchor=3.0, anchor_pick="max")


@pytest.mark.learns
def test_audio2exp_from_emotion_learns_the_anchors(tmp_path: Path) -> None:
    """Trained on the anchors with `model.exp_from_emotion`, the expression error falls as the emotion head
    learns (the only path to the weights): a real Trainer on a fixed batch."""
    stage = anchored_audio2exp(3.0, from_emotion=True)
    stage.cfg.diagnostics_every_n_steps, stage.cfg.optim.lr = 0, 3e-3
    batch = talking_batch(4, 12, seed=learn_seed(4))
    del batch["exp"]
    batch["emotion"] = torch.tensor([0, 4, 5, 6])
    rows = fit_fixed(stage, batch, 40, tmp_path)
    e0, e1 = first_last(rows, "train/exp")
    below("exp last/first", e1 / e0, 0.3)
    above("last train accuracy", rows[-1]["train/accuracy"], 0.99)
