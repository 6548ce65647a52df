"""FramesDataModule: one video's frames (folder, video file, shards) for finetune, and a finetune run on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import FramesDataModule
from datamodules.shards import iter_clips

S = 32


@pytest.fixture(scope="module")
def clip_frames(builtin: Path) -> np.ndarray:
    clip = next(iter_clips(builtin, "test"))
    return clip.frames(range(30))  # 30 x 256 x 256 x 3


@pytest.fixture(scope="module")
def frame_folder(tmp_path_factory: pytest.TempPathFactory, clip_frames: np.ndarray) -> Path:
    """frame_0.png ... frame_29.png: natural order differs from the lexical one (frame_10 < frame_2)."""
    folder = tmp_path_factory.mktemp("frames")
    for i, frame in enumerate(clip_frames):
        Image.fromarray(frame).save(folder / f"frame_{i}.png")
    (folder / "notes.txt").write_text("not a frame")
    return folder


def _grey(images: torch.Tensor) -> np.ndarray:
    return images.float().mean(dim=(1, 2, 3)).numpy()


def test_folder_frames_split_and_batches(frame_folder: Path, clip_frames: np.ndarray) -> None:
    dm = FramesDataModule(frame_folder, image_size=S, batch_size=4, num_workers=0)
    dm.setup("fit")
    assert len(dm.load_frames()) == 30
    assert [p.name for p in dm.load_frames().paths[:3]] == ["frame_0.png", "frame_1.png", "frame_2.png"]
    train, val = dm.split()
    assert train.tolist() == list(range(24)) and val.tolist() == list(range(24, 30))  # first 80 % / last 20 %

    from datamodules.samplers import to_image_tensor

    expected = to_image_tensor(clip_frames, S)  # 30 x 3 x S x S uint8, the same resize as the loader
    batches = list(dm.train_dataloader())
    assert len(batches) == 6
    targets = torch.cat([b["target"] for b in batches])
    sources = torch.cat([b["source"] for b in batches])
    assert targets.dtype == torch.uint8 and targets.shape == (24, 3, S, S)
    index = lambda t: int(((expected.float() - t.float()).abs().mean(dim=(1, 2, 3))).argmin())  # noqa: E731
    target_ids = sorted(index(t) for t in targets)
    assert target_ids == list(range(24))  # every training frame is a target once per epoch
    source_ids = [index(s) for s in sources]
    assert all(s < 24 for s in source_ids)  # sources never come from the held-out frames
    assert all(index(t) != s for t, s in zip(targets, source_ids))  # a source is another frame

    val_batches = [list(dm.val_dataloader()), list(dm.val_dataloader())]
    for first, second in zip(*val_batches):
        assert torch.equal(first["target"], second["target"]) and torch.equal(
            first["source"], second["source"]
        )
    val_targets = torch.cat([b["target"] for b in val_batches[0]])
    assert [index(t) for t in val_targets] == list(range(24, 30))
    assert all(
        torch.equal(s, expected[0]) for b in val_batches[0] for s in b["source"]
    )  # fixed source: frame 0


def test_video_file_is_resampled_to_25_fps(tmp_path: Path, clip_frames: np.ndarray) -> None:
    from edtalk.io import write_video

    video = write_video(tmp_path / "person.mp4", clip_frames, fps=30)  # 1 s at 30 fps -> 25 frames
    dm = FramesDataModule(video, image_size=S, batch_size=5, num_workers=0)
    dm.setup("fit")
    assert len(dm.load_frames()) == 25
    batch = next(iter(dm.train_dataloader()))
    assert batch["source"].shape == (5, 3, S, S)

    wide = write_video(tmp_path / "wide.mp4", np.zeros((10, 64, 96, 3), np.uint8), fps=25)
    with pytest.raises(ValueError, match=r"96x64.*square face crops.*edtalk preprocess"):
        FramesDataModule(wide).setup("fit")


def test_shard_directory_picks_one_person(builtin: Path) -> None:
    default = FramesDataModule(builtin, image_size=S, num_workers=0)
    default.setup("fit")
    test_clips = [c for c in iter_clips(builtin, "test")]
    person = test_clips[0].meta["speaker"]
    assert default.load_frames().name == person  # the first test clip's speaker, all of that person's clips
    assert len(default.load_frames()) == sum(c.num_frames for c in test_clips if c.meta["speaker"] == person)

    key = sorted(c.key for c in test_clips)[0]
    video = key.rsplit("#", 1)[0]  # a video name takes all its clips
    one = FramesDataModule(builtin, clip=key, num_workers=0)
    several = FramesDataModule(builtin, clip=video, num_workers=0)
    n_one = next(c.num_frames for c in test_clips if c.key == key)
    assert len(one.load_frames()) == n_one
    assert len(several.load_frames()) == sum(
        c.num_frames for c in test_clips if c.key.startswith(video + "#")
    )
    with pytest.raises(ValueError, match=r"no clips of speaker 'S99'"):
        FramesDataModule(builtin, speaker="S99").setup("fit")


def test_bad_frame_folders_name_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no frames .* in .*empty"):
        FramesDataModule(empty).setup("fit")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.new("RGB", (64, 64)).save(mixed / "a.png")
    Image.new("RGB", (32, 32)).save(mixed / "b.png")
    with pytest.raises(ValueError, match=r"differ in size: .*a.png is \(64, 64\)"):
        FramesDataModule(mixed).setup("fit")
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(4):
        Image.new("RGB", (64, 64)).save(broken / f"{i}.png")
    (broken / "4.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"cannot read frame .*4.png"):
        FramesDataModule(broken).setup("fit")
    (broken / "4.png").unlink()
    (broken / "3.png").unlink()
    (broken / "2.png").unlink()
    with pytest.raises(ValueError, match=r"2 frames are too few"):
        FramesDataModule(broken).setup("fit")


def test_finetune_experiment_trains_on_a_frame_folder(tmp_path: Path, frame_folder: Path) -> None:
    from edtalk.train import compose, fit

    steps = ["trainer.max_steps=2", "trainer.val_check_interval=2", "checkpoint.every_n_steps=2"]
    rec = fit(compose("reconstruct", [f"run.root={tmp_path}", *steps], debug=True))
    init = rec / "checkpoints" / "last.ckpt"
    cfg = compose(
        "finetune",
        [
            f"run.root={tmp_path}",
            f"data.root={frame_folder}",
            f"init_from={init}",
            "model.trainable=[synthesis.*]",
            *steps,
        ],
        debug=True,
    )
    assert cfg.data.module == "datamodules.FramesDataModule"
    run = fit(cfg)
    before = torch.load(init, map_location="cpu", weights_only=True)["state_dict"]
    after = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    decoder = [k for k in before if k.startswith("generator.synthesis.")]
    encoder = [k for k in before if k.startswith("generator.encoder.")]
    assert decoder and encoder
    assert any(not torch.equal(before[k], after[k]) for k in decoder)  # the decoder trained
    assert all(torch.equal(before[k], after[k]) for k in encoder)  # the rest is frozen (decoder-only option)
