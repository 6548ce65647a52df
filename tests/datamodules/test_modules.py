"""DataModules: batch shapes and ranges at 64², deterministic validation, labels, audio alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import AudioDataModule, CrossPairDataModule, EmotionDataModule, PairDataModule
from datamodules.shards import ClipRecord, ShardWriter, read_index
from edtalk.io import from_uint8, images_to_float
from edtalk.mel import mel_spectrogram

S, B = 64, 4
CASES = [
    (PairDataModule, {}, {"source": (B, 3, S, S), "target": (B, 3, S, S), "target_box": (B, 4), "emotion": (B,), "pair_fallback": (B,)}),
    (CrossPairDataModule, {}, {**{k: (B, 3, S, S) for k in ("source_a", "target_a", "source_b", "target_b", "swap_ab", "swap_ba")}, "box_a": (B, 4), "box_b": (B, 4)}),
    (EmotionDataModule, {"clip_frames": 3}, {"source": (B, 3, S, S), "target": (B, 3, S, S), "target_box": (B, 4), "emotion": (B,), "frames": (B, 3, 3, S, S), "pair_fallback": (B,)}),
    (AudioDataModule, {"clip_frames": 5}, {"frames": (B, 5, 3, S, S), "mel": (B, 5, 1, 80, 16), "identity": (B, 3, S, S), "bbox": (B, 5, 4), "face_box": (B, 5, 4), "emotion": (B,)}),
]  # fmt: skip


@pytest.mark.parametrize(("cls", "kwargs", "shapes"), CASES, ids=[c[0].__name__ for c in CASES])
def test_batches_have_the_contract_shapes(builtin: Path, cls: type, kwargs: dict, shapes: dict) -> None:
    dm = cls(builtin, image_size=S, batch_size=B, num_workers=0, **kwargs)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    train_clips = read_index(builtin)["splits"]["train"]["clips"]
    assert len(batches) == -(-train_clips // B)  # one epoch = one sample per training clip
    batch = batches[0]
    assert {k: tuple(v.shape) for k, v in batch.items()} == shapes
    images = {
        k
        for k in shapes
        if k not in ("mel", "bbox", "face_box", "emotion", "target_box", "box_a", "box_b", "pair_fallback")
    }
    assert {k for k, v in batch.items() if v.dtype == torch.uint8} == images  # images leave as uint8
    floats = images_to_float(batch)
    for key in images:
        value = floats[key]
        assert value.dtype == torch.float32 and value.shape == batch[key].shape
        assert value.min() >= -1 and value.max() <= 1 and value.std() > 0.05, key
    if "emotion" in batch:
        assert set(batch["emotion"].tolist()) <= {0, 4, 5, 6}  # angry, happy, neutral, sad
    val = [list(dm.val_dataloader()), list(dm.val_dataloader())]
    assert len(val[0]) > 0
    for first, second in zip(*val):
        assert all(torch.equal(first[k], second[k]) for k in first)  # deterministic validation set


def test_mouth_swap_batch_mixes_identities(builtin: Path) -> None:
    dm = CrossPairDataModule(builtin, image_size=S, batch_size=8, num_workers=0)
    dm.setup("fit")
    batch = images_to_float(next(iter(dm.train_dataloader())))
    outside = torch.zeros(S, S, dtype=torch.bool)
    outside[: S // 2] = True  # upper half: no mouth there
    diff_top = (batch["swap_ab"] - batch["target_a"])[..., outside].abs().mean()
    diff_all = (batch["swap_ab"] - batch["target_a"]).abs().mean()
    assert diff_top < 1e-6 < diff_all  # only the mouth region changes


def test_target_mouth_boxes_frame_the_mouth(builtin: Path) -> None:
    """The boxes of the `model.loss.mouth` term: inside the image, a mouth-sized part of the lower half,
    and centred where the target frame's lips are dark (the built-in data shades the gap)."""
    dm = PairDataModule(builtin, image_size=S, batch_size=8, num_workers=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    box = batch["target_box"]
    assert (box >= 0).all() and (box <= S).all()
    w, h = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    assert ((w > 0.1 * S) & (w < 0.5 * S) & (h > 0.03 * S) & (h < 0.5 * S)).all(), box
    centre_y = (box[:, 1] + box[:, 3]) / 2
    assert (centre_y > S / 2).all(), box  # the mouth is in the lower half of the crop
    cross = CrossPairDataModule(builtin, image_size=S, batch_size=4, num_workers=0)
    cross.setup("fit")
    pairs = next(iter(cross.train_dataloader()))
    for key in ("box_a", "box_b"):
        assert ((pairs[key][:, 1] + pairs[key][:, 3]) / 2 > S / 2).all(), pairs[key]


def test_builtin_metadata_has_ground_truth_factors(builtin: Path) -> None:
    from datamodules.shards import iter_clips

    index = read_index(builtin)
    assert (
        index["splits"]["train"]["clips"] == 48 and index["splits"]["test"]["clips"] == 16
    )  # 6 + 2 speakers
    for clip in iter_clips(builtin, "test"):
        factors = clip.meta["factors"]
        assert (
            clip.meta["speaker"] in ("S07", "S08")
            and clip.meta["fps"] == 25
            and clip.meta["dataset"] == "builtin"
        )
        assert len(factors["mouth_open"]) == len(factors["yaw"]) == clip.num_frames == len(clip.lmk)
        assert factors["emotion_id"] == clip.meta["emotion_id"]
        assert (factors["intensity"] == 0) == (
            clip.meta["emotion"] == "neutral"
        )  # per-clip emotion intensity
        assert 0.2 < float(np.max(factors["mouth_open"])) <= 1.0
        assert clip.frame(0).shape == (256, 256, 3)
        assert abs(len(clip.wav()) - 640 * clip.num_frames) < 640


def _beep_clip(tmp_path: Path, beep: int, num_frames: int = 30) -> Path:
    """A clip whose frame t has grey level 8 t and whose audio is silent except a tone during frame `beep`."""
    wav = np.zeros(num_frames * 640, np.float32)
    t = np.arange(640) / 16000
    wav[beep * 640 : (beep + 1) * 640] = 0.5 * np.sin(2 * np.pi * 1000 * t)
    frames = np.stack([np.full((32, 32, 3), 8 * i, np.uint8) for i in range(num_frames)])
    lmk = np.zeros((num_frames, 68, 2), np.float32)
    bbox = np.tile(np.array([0, 0, 32, 16], np.float32), (num_frames, 1))
    meta = {"dataset": "test", "speaker": "X", "emotion": None, "emotion_id": -1, "fps": 25}
    root = tmp_path / "beep"
    with ShardWriter(root) as writer:
        for split in ("train", "test"):
            clip = ClipRecord(
                f"X#{split}", frames, wav, lmk, bbox, {**meta, "split": split}, mel_spectrogram(wav)
            )
            writer.write(clip)
    return root


def test_audio_windows_are_centred_on_their_frames(tmp_path: Path) -> None:
    beep = 14
    root = _beep_clip(tmp_path, beep)
    dm = AudioDataModule(root, image_size=32, batch_size=1, num_workers=0, samples_per_clip=40, clip_frames=5)
    dm.setup("fit")
    hits = 0
    for batch in dm.val_dataloader():
        index = (batch["frames"][0, :, 0, 0, 0].long() / 8).round().long()  # frame ids of the window
        assert torch.equal(index, index[0] + torch.arange(5))  # consecutive frames
        energy = batch["mel"][0, :, 0].mean(1)  # -> T x 16 (energy per mel column)
        for j, frame in enumerate(index.tolist()):
            if frame == beep:
                hits += 1
                weight = energy[j] + 4  # above the silence floor
                centre = (weight * torch.arange(16)).sum() / weight.sum()
                assert 7.0 <= centre <= 9.0 and energy[j].max() > -2.0, energy[
                    j
                ]  # tone at the window centre (7.5)
            elif abs(frame - beep) >= 4:
                assert energy[j].max() < -3.5  # far frames: silence floor (-4) across the whole window
        assert torch.allclose(batch["bbox"][0], torch.tensor([0.0, 0, 32, 16]).expand(5, 4))
    assert hits > 0


def test_audio_module_reads_coefficient_sidecars(tmp_path: Path) -> None:
    root = _beep_clip(tmp_path, 3)
    for shard in read_index(root)["shards"]:
        coeffs = {
            c: np.tile(np.arange(36, dtype=np.float32), (30, 1)) + 100 * np.arange(30)[:, None]
            for c in shard["clips"]
        }
        np.savez(root / f"{shard['name']}.coeffs.npz", __dims__=np.array([20, 6, 10]), **coeffs)
    dm = AudioDataModule(root, image_size=32, batch_size=2, num_workers=0, samples_per_clip=2, clip_frames=4)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert (
        batch["mouth"].shape == (2, 4, 20)
        and batch["pose"].shape == (2, 4, 6)
        and batch["exp"].shape == (2, 4, 10)
    )
    frame = (batch["frames"][:, :, 0, 0, 0].float() / 8).round()
    torch.testing.assert_close(batch["mouth"][..., 0], 100 * frame)  # coefficient row t goes with frame t
    torch.testing.assert_close(batch["exp"][..., 0], 100 * frame + 26)


def test_train_epoch_is_split_evenly_over_workers(tiny_shards: Path) -> None:
    dm = PairDataModule(tiny_shards, image_size=32, batch_size=2, num_workers=2, samples_per_epoch=12)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 6 and all(b["source"].shape == (2, 3, 32, 32) for b in batches)


def test_stages_turn_uint8_images_into_the_float_range_on_transfer() -> None:
    from edtalk.stages.supervised import StageConfig, SupervisedStage

    stage = SupervisedStage(torch.nn.Linear(1, 1), {}, StageConfig())
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(2, 3, 16, 16)
    batch = {"frames": pixels, "bbox": torch.ones(2, 4), "emotion": torch.tensor([1, 2])}
    out = stage.on_after_batch_transfer(batch, 0)
    assert out["frames"].dtype == torch.float32
    assert out["frames"].min() == -1 and out["frames"].max() == 1
    torch.testing.assert_close(out["frames"], from_uint8(pixels.movedim(1, -1)), rtol=0, atol=0)
    assert out["bbox"] is batch["bbox"] and out["emotion"] is batch["emotion"]
    assert stage.on_after_batch_transfer(out, 0)["frames"] is out["frames"]  # float images pass through
