"""Neutral -> emotional pairing that holds at any world size: the neutral bank and `edtalk data pairing`.

MEAD-shaped shards made here: 48 speakers, one neutral and six emotional clips each (plus one speaker with
no neutral clip), four clips per shard in a shuffled order, so a rank's loader worker reads few shards.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from datamodules import EmotionDataModule, PairDataModule
from datamodules.samplers import EmotionSampler, simulate_pairing
from datamodules.shards import (
    ClipRecord,
    NeutralBank,
    ShardWriter,
    clip_infos,
    clip_pipeline,
    ensure_neutral_bank,
    neutral_bank_path,
    read_index,
    shard_urls,
)
from edtalk.cli import main

EMOTIONS = {"angry": 1, "contempt": 2, "disgusted": 3, "fear": 4, "happy": 5, "sad": 6}


def _clip(speaker: str, emotion: str, split: str) -> ClipRecord:
    frames = np.full((2, 16, 16, 3), 100, np.uint8)
    meta = {
        "dataset": "mead",
        "speaker": speaker,
        "emotion": emotion,
        "emotion_id": 0 if emotion == "neutral" else EMOTIONS[emotion],
        "level": "level_1",
        "fps": 25,
        "split": split,
    }
    lmk, bbox = np.zeros((2, 68, 2), np.float32), np.tile(np.float32([4, 8, 12, 14]), (2, 1))
    return ClipRecord(f"{speaker}#{emotion}#level_1#001", frames, np.zeros(1280, np.float32), lmk, bbox, meta)


@pytest.fixture(scope="module")
def mead_shaped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mead_shaped")
    clips = [_clip(f"M{s:03d}", e, "train") for s in range(48) for e in ["neutral", *EMOTIONS]]
    clips += [_clip("W999", e, "train") for e in ("angry", "sad")]  # a speaker with no neutral clip
    clips += [_clip("T001", e, "test") for e in ("neutral", "happy")]
    order = np.random.default_rng(0).permutation(len(clips))
    with ShardWriter(root, max_clips=4) as writer:
        for i in order:
            writer.write(clips[i])
    return root


def _report(root: Path, world: int, workers: int, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    argv = ["data", "pairing", "--shards", str(root), "--stage", "expression", "--json"]
    assert main([*argv, "--world-size", str(world), "--workers", str(workers), *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("world", [1, 2, 16, 64])
def test_same_clip_pairs_stay_under_one_percent_at_any_world_size(
    mead_shaped: Path, world: int, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _report(mead_shaped, world, 4, capsys)
    assert report["targets"] >= 48 * 6  # one epoch: one sample per clip, rounded up per stream
    assert report["streams"] == world * 4
    # only W999 (no neutral clip) pairs within its clips: 2 of 290 targets
    assert report["same_clip"] == report["fallbacks"] <= 2 * -(-report["targets"] // 290)
    assert report["fraction"] <= 0.01
    assert report["bank"] == str(neutral_bank_path(mead_shaped, "train"))


def test_without_the_bank_pairing_degrades_with_the_world_size(
    mead_shaped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The per-stream pools (data.neutral_bank=null), what the bank replaces: with one neutral clip per
    speaker a stream rarely holds the target speaker's neutral frames within `pending` clips (measured
    here: 76 % same-clip at 1 x 4 streams, 57 % at 64 x 4, against <= 0.8 % with the bank)."""
    for world in (1, 64):
        pools = _report(mead_shaped, world, 4, capsys, "--bank", "none")
        assert pools["fraction"] > 0.3 and pools["bank"] is None


def test_bank_holds_every_neutral_clip_and_is_rewritten_when_shards_change(mead_shaped: Path) -> None:
    path = ensure_neutral_bank(mead_shaped, "train")
    assert path is not None
    bank = NeutralBank(path)
    assert len(bank.rows) == 48 and "W999" not in bank.rows
    assert {bank.jpeg(r)[1] for r in bank.candidates("M007")} == {"M007#neutral#level_1#001"}
    mtime = path.stat().st_mtime_ns
    assert ensure_neutral_bank(mead_shaped, "train") == path and path.stat().st_mtime_ns == mtime
    (mead_shaped / "index.json").touch()  # appended shards: the bank is older than the index
    ensure_neutral_bank(mead_shaped, "train")
    assert path.stat().st_mtime_ns > mtime


def test_sampler_with_bank_pairs_from_the_first_clip_of_a_stream(mead_shaped: Path) -> None:
    """One shard alone (no neutral clip of its speakers in it): every target still gets a neutral source."""
    bank = ensure_neutral_bank(mead_shaped, "train")
    url = shard_urls(mead_shaped, "train")[0]
    sampler = EmotionSampler(image_size=16, keys=True, neutral_bank=str(bank))
    samples = list(sampler(clip_pipeline([url], rank=0, world_size=1)))
    labelled = [s for s in samples if not s["target_key"].startswith("W999")]
    assert labelled and all("#neutral#" in s["source_key"] for s in labelled)
    assert all(s["source_key"].split("#")[0] == s["target_key"].split("#")[0] for s in labelled)
    assert [bool(s["pair_fallback"]) for s in samples] == [
        s["target_key"].startswith("W999") for s in samples
    ]
    assert sampler.fallbacks == sum(s["target_key"].startswith("W999") for s in samples)


def test_datamodule_uses_the_bank_by_default(mead_shaped: Path) -> None:
    dm = EmotionDataModule(mead_shaped, image_size=16, batch_size=2, num_workers=0)
    assert dm.sampler(deterministic=False).neutral_bank == str(neutral_bank_path(mead_shaped, "train"))
    assert dm.sampler(deterministic=True, split="test").neutral_bank == str(
        neutral_bank_path(mead_shaped, "test")
    )
    off = EmotionDataModule(mead_shaped, image_size=16, batch_size=2, num_workers=0, neutral_bank=None)
    assert off.sampler(deterministic=False).neutral_bank is None
    batch = next(iter(dm.train_dataloader()))
    assert batch["pair_fallback"].dtype.is_floating_point is False


def test_simulation_runs_the_samplers_own_schedule(mead_shaped: Path) -> None:
    """The report's decision is the sampler's: pairing=clip makes every target same-clip."""
    shards = clip_infos(mead_shaped, "train")
    assert sum(len(v) for v in shards.values()) == 48 * 7 + 2
    clip = simulate_pairing(EmotionSampler(pairing="clip"), shards, 2, 2)
    assert clip["fraction"] == 1.0
    first = next(islice(iter(shards.values()), 1))
    assert first and all(c.url for c in first)


@pytest.mark.parametrize(("world", "workers"), [(2, 2), (4, 2)])
def test_resample_false_reads_every_training_clip_once_per_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, world: int, workers: int
) -> None:
    """data.resample=false: the node split and the worker split together read every clip exactly once
    (16 clips in 8 shards; each rank a DataModule as under DDP, each with real loader worker processes)."""
    from tests.test_train_multinode import _shards

    root = _shards(tmp_path / "shards")
    seen: list[str] = []
    batches = []
    for rank in range(world):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world))
        dm = PairDataModule(root, image_size=16, batch_size=2, num_workers=workers, resample=False, keys=True)
        rank_batches = list(dm.train_dataloader())
        batches.append(len(rank_batches))
        seen += [key for b in rank_batches for key in b["target_key"]]
    assert len(set(batches)) == 1  # every rank the same number of steps
    assert sorted(seen) == sorted(
        c for s in read_index(root)["shards"] if s["split"] == "train" for c in s["clips"]
    )
