"""The paper's audio2exp input path: HuBERT features from a local checkpoint, written beside the shards.

A tiny random-init `transformers` HuBERT is saved in the real checkpoint layout (`save_pretrained`) and
run over the built-in shards; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip(
    "transformers", reason="the hubert extra is not installed (pip install -c constraints.txt -e '.[hubert]')"
)

from datamodules.preprocess.hubert import HUBERT, FeatureSidecar, extract_hubert, feature_path  # noqa: E402
from datamodules.shards import iter_clips, read_index  # noqa: E402
from edtalk.cli import main as cli  # noqa: E402
from edtalk.nn.hubert import HubertFeatures, load_hubert, to_video_rate  # noqa: E402

DIM = 32


def save_tiny_hubert(path: Path) -> Path:
    """A random-init HuBERT (2 layers, 32 wide, 20-sample hop) in the layout `save_pretrained` writes."""
    torch.manual_seed(0)
    cfg = transformers.HubertConfig(
        hidden_size=DIM,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32, 32),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    transformers.HubertModel(cfg).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_hubert(tmp_path_factory.mktemp("hubert"))


def linked_shards(dst: Path) -> Path:
    """The built-in shards seen from `dst` (symlinks), so sidecars are written into `dst`."""
    from datamodules.synthetic import ensure_builtin

    src = ensure_builtin()
    dst.mkdir()
    for item in src.iterdir():
        if item.name == "index.json" or item.suffix == ".tar":
            (dst / item.name).symlink_to(item)
    return dst


@pytest.fixture(scope="module")
def hubert_shards(tmp_path_factory: pytest.TempPathFactory, hubert_dir: Path) -> Path:
    """The built-in shards with HuBERT sidecars written by the tiny checkpoint."""
    root = linked_shards(tmp_path_factory.mktemp("data") / "shards")
    extract_hubert(hubert_dir, root)
    return root


def test_to_video_rate_maps_frame_centres() -> None:
    # a ramp over HuBERT frame centres (50 Hz: frame n at (n + 0.5) / 50 s) read at video frame centres
    n_frames = 10
    hub = torch.arange(2 * n_frames, dtype=torch.float32)[:, None]  # value = index, N = 2T
    out = to_video_rate(hub, n_frames)
    assert out.shape == (n_frames, 1)
    t = torch.arange(n_frames, dtype=torch.float32)
    expected = (2 * t + 0.5).clamp(max=2 * n_frames - 1)  # centre of video frame t in HuBERT frames
    torch.testing.assert_close(out[:, 0], expected)


def test_missing_checkpoint_names_the_path_and_where_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no HuBERT checkpoint at .*nowhere.*hubert-large-ls960-ft"):
        load_hubert(tmp_path / "nowhere")


def test_sidecars_hold_one_feature_row_per_video_frame(hubert_shards: Path, hubert_dir: Path) -> None:
    index = read_index(hubert_shards)
    extractor = HubertFeatures(load_hubert(hubert_dir))
    for shard in index["shards"]:
        sidecar = FeatureSidecar(feature_path(hubert_shards / shard["name"], HUBERT))
        assert sorted(sidecar.clip_ids) == sorted(shard["clips"])
        assert sidecar.meta["dim"] == DIM and sidecar.meta["fps"] == 25
    clip = next(iter_clips(hubert_shards, "test"))
    feats = FeatureSidecar(feature_path(clip.url, HUBERT))[clip.key]
    assert feats.shape == (clip.num_frames, DIM) and feats.dtype == np.float32
    assert np.isfinite(feats).all() and feats.std(0).mean() > 0  # features vary over time
    # the stored rows are the model's output on the clip's audio, resampled to the video frames
    again = extractor(torch.from_numpy(clip.wav()), clip.num_frames).numpy()
    np.testing.assert_allclose(feats, again, rtol=1e-5, atol=1e-5)
    # and they depend on the audio: the features of silence differ
    silent = extractor(torch.zeros_like(torch.from_numpy(clip.wav())), clip.num_frames).numpy()
    assert np.abs(feats - silent).max() > 1e-3


def test_second_run_skips_existing_sidecars(tmp_path: Path, hubert_dir: Path) -> None:
    root = linked_shards(tmp_path / "shards")
    tests, shards = len(list(root.glob("test-*.tar"))), len(list(root.glob("*.tar")))
    first = extract_hubert(hubert_dir, root, splits=["test"])
    assert len(first) == tests and not list(root.glob(".*tmp*"))  # atomic: no temporary left behind
    stamps = {p: p.stat().st_mtime_ns for p in first}
    lines: list[str] = []
    assert extract_hubert(hubert_dir, root, splits=["test"], progress=lines.append) == []
    assert all(line.startswith("skip ") for line in lines) and len(lines) == tests
    assert {p: p.stat().st_mtime_ns for p in first} == stamps
    # the CLI: resumes the same way (train shards new, test ones skipped), exit 0
    assert cli(["extract-hubert", str(hubert_dir), "--shards", str(root)]) == 0
    assert len(list(root.glob("*.tar" + HUBERT))) == shards > tests
    assert {p: p.stat().st_mtime_ns for p in first} == stamps


def test_cli_missing_checkpoint_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = linked_shards(tmp_path / "shards")
    assert cli(["extract-hubert", str(tmp_path / "absent"), "--shards", str(root)]) == 2
    assert "no HuBERT checkpoint" in capsys.readouterr().err


# -- audio2exp with input=hubert (+ text) over the real data path --------------------------------------
TEXT_DIM = 8


@pytest.fixture(scope="module")
def training_shards(hubert_shards: Path) -> Path:
    """`hubert_shards` plus coefficient sidecars (exp = emotion id / 8 + clip and frame noise) and text vectors."""
    from datamodules.preprocess.hubert import TEXT, write_features
    from edtalk.coefficients import write_sidecar

    rng = np.random.default_rng(0)
    for shard in read_index(hubert_shards)["shards"]:
        coeffs, text = {}, {}
        for clip in iter_clips(hubert_shards, shard["split"]):
            if not clip.url.endswith(shard["name"]):
                continue
            level = int(clip.meta.get("emotion_id", 0)) / 8 + rng.normal(0, 0.2, (1, 10))
            exp = level + rng.normal(0, 0.1, (clip.num_frames, 10))
            coeffs[clip.key] = np.concatenate([rng.normal(size=(clip.num_frames, 26)), exp], 1).astype(
                np.float32
            )
            text[clip.key] = rng.normal(size=TEXT_DIM)
        write_sidecar(hubert_shards / shard["name"], (20, 6, 10), coeffs)
        write_features(hubert_shards / shard["name"], TEXT, text, {"dim": TEXT_DIM})
    return hubert_shards


def test_sampler_aligns_hubert_rows_with_the_frames_and_adds_text(training_shards: Path) -> None:
    from datamodules.preprocess.hubert import TEXT
    from datamodules.samplers import AudioSampler
    from datamodules.shards import clip_pipeline
    from edtalk.coefficients import open_sidecar

    shard = str(training_shards / read_index(training_shards)["shards"][2]["name"])
    sampler = AudioSampler(
        image_size=64, clip_frames=10, samples_per_clip=3, coefficients=True, hubert=True, text=True
    )
    samples = list(sampler(iter(clip_pipeline([shard], rank=0, world_size=1))))
    assert len(samples) == 12
    hub = FeatureSidecar(feature_path(shard, HUBERT))
    text = FeatureSidecar(feature_path(shard, TEXT))
    coeffs = open_sidecar(shard, "unused")
    starts = set()
    for s in samples:
        assert s["hubert"].shape == (10, DIM) and s["text"].shape == (TEXT_DIM,)
        # find the clip and window by its (random, distinct) coefficient rows: the HuBERT rows must be the same frames
        key = next(k for k in coeffs.clip_ids if np.isin(s["exp"][0].numpy(), coeffs.parts(k)["exp"]).all())
        start = int(np.flatnonzero((coeffs.parts(key)["exp"] == s["exp"][0].numpy()).all(1))[0])
        starts.add(start)
        np.testing.assert_array_equal(s["hubert"].numpy(), hub[key][start : start + 10])
        np.testing.assert_array_equal(s["text"].numpy(), text[key])
    assert len(starts) > 1  # windows at different offsets, all aligned


def test_modality_masking_drops_audio_or_text_never_both() -> None:
    from edtalk.nn.audio2exp import Audio2Exp, Audio2ExpConfig

    net = Audio2Exp(
        Audio2ExpConfig(input="hubert", feature_dim=DIM, hidden=8, text_dim=TEXT_DIM, modality_mask=0.3)
    )
    n = 4000
    audio = torch.full((n, 16), 1.0)
    text = torch.randn(n, TEXT_DIM)
    words = net.text_in(text).detach()  # type: ignore[misc]
    with torch.no_grad():
        fused = net.train().fuse(audio, text)
        kept = net.eval().fuse(audio, text)
    torch.testing.assert_close(kept, audio + words)  # inference: nothing dropped
    only_words = torch.isclose(fused, words).all(1)
    only_audio = torch.isclose(fused, audio).all(1) & ~torch.isclose(words, torch.zeros_like(words)).all(1)
    both = torch.isclose(fused, audio + words).all(1)
    assert bool((only_words | only_audio | both).all())  # each clip: one of the three, never neither
    assert abs(only_words.float().mean().item() - 0.3) < 0.04  # audio dropped with p
    assert abs(only_audio.float().mean().item() - 0.3) < 0.04  # text dropped with p
    with pytest.raises(ValueError, match="modality_mask must be in"):
        Audio2ExpConfig(modality_mask=0.7)
    with pytest.raises(ValueError, match="reads HuBERT features B x T x 32"):
        net(torch.zeros(1, 5, 1, 80, 16))


@pytest.mark.learns
@pytest.mark.parametrize("text_dim", [0, TEXT_DIM], ids=["audio", "audio+text"])
def test_audio2exp_fits_hubert_features(training_shards: Path, tmp_path: Path, text_dim: int) -> None:
    from datamodules import AudioDataModule
    from edtalk.nn.audio2exp import Audio2Exp, Audio2ExpConfig
    from edtalk.stages.audio2exp import Audio2ExpLoss, Audio2ExpStage, Audio2ExpStageConfig, network_config
    from tests.learn import below, seed_torch
    from tests.stages.helpers import FixedBatchData, LossRecorder, trainer

    seed_torch()
    data = AudioDataModule(
        training_shards,
        image_size=64,
        batch_size=4,
        num_workers=0,
        clip_frames=20,
        coefficients=True,
        hubert=True,
        text=bool(text_dim),
        seed=seed_torch(1),
    )
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["hubert"].shape == (4, 20, DIM)
    network = Audio2ExpConfig(input="hubert", feature_dim=DIM, hidden=64, context_layers=1, text_dim=text_dim)
    cfg = Audio2ExpStageConfig(width=1.0, network=network, loss=Audio2ExpLoss(emotion=0.1))
    cfg.diagnostics_every_n_steps, cfg.optim.lr = 0, 3e-3
    net_cfg = network_config(cfg)
    assert net_cfg.input == "hubert" and net_cfg.feature_dim == DIM
    stage = Audio2ExpStage(Audio2Exp(net_cfg), net_cfg.to_dict(), cfg)
    rec = LossRecorder()
    trainer(tmp_path, 40, callbacks=[rec], log_every_n_steps=1).fit(stage, datamodule=FixedBatchData(batch))
    first = np.mean([r["train/exp"] for r in rec.rows[:3]])
    last = np.mean([r["train/exp"] for r in rec.rows[-3:]])
    below("hubert audio2exp exp-loss last/first", last / first, 0.3)


def test_mel_default_is_unchanged_and_hubert_needs_its_features() -> None:
    from edtalk.nn.audio2exp import Audio2Exp, Audio2ExpConfig
    from edtalk.nn.audio_encoder import AudioEncoder
    from edtalk.stages.audio2exp import Audio2ExpStage, Audio2ExpStageConfig

    mel = Audio2Exp(Audio2ExpConfig.tiny())
    assert (
        isinstance(mel.audio, AudioEncoder) and mel.text_in is None
    )  # the default's keys stay those of old files
    assert not any(k.startswith("text_in") for k in mel.state_dict())
    net = Audio2Exp(Audio2ExpConfig(input="hubert", feature_dim=DIM, hidden=8))
    assert not any(k.startswith("audio.") for k in net.state_dict())  # no mel encoder to carry
    stage = Audio2ExpStage(net, net.cfg.to_dict(), Audio2ExpStageConfig())
    batch = {
        "mel": torch.zeros(2, 5, 1, 80, 16),
        "exp": torch.zeros(2, 5, 10),
        "emotion": torch.zeros(2).long(),
    }
    with pytest.raises(KeyError, match=r"no 'hubert'.*edtalk extract-hubert"):
        stage.compute(batch, train=True)


def test_fit_audio2exp_hubert_experiment_end_to_end(training_shards: Path, tmp_path: Path) -> None:
    """`edtalk fit audio2exp_hubert` over shards with HuBERT and coefficient sidecars: a real run, a checkpoint."""
    args = [
        "fit",
        "audio2exp_hubert",
        f"data.root={training_shards}",
        f"run.root={tmp_path / 'runs'}",
        "run.name=t",
        f"model.network.feature_dim={DIM}",
        "model.width=0.125",
        "data.clip_frames=10",
        "data.batch_size=4",
        "data.num_workers=0",
        "trainer.max_steps=2",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "trainer.enable_progress_bar=false",
        "trainer.val_check_interval=2",
        "trainer.limit_val_batches=1",
    ]
    assert cli(args) == 0
    assert (tmp_path / "runs" / "audio2exp_hubert" / "t" / "checkpoints" / "last.ckpt").is_file()


# -- text vectors from a local text encoder (EmoBERTa's layout: a RoBERTa + its tokenizer) -----------------
WORDS = ["<pad>", "<s>", "</s>", "<unk>", "i", "am", "so", "happy", "sad", "angry", "calm", "today"]


def save_tiny_text_encoder(path: Path) -> Path:
    """A random-init 1-layer RoBERTa (16 wide) with a word-level tokenizer, saved by `save_pretrained`."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(0)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    special = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **special).save_pretrained(path)
    cfg = transformers.RobertaConfig(
        vocab_size=len(WORDS),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=40,
        pad_token_id=0,
    )
    transformers.RobertaModel(cfg).save_pretrained(path)
    return path


def test_extract_text_writes_one_vector_per_clip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from datamodules.preprocess.hubert import TEXT

    encoder = save_tiny_text_encoder(tmp_path / "emoberta")
    root = linked_shards(tmp_path / "shards")
    clips = [c for s in read_index(root)["shards"] for c in s["clips"]]
    transcripts = {
        c: f"i am so {c.split('#')[1] if c.split('#')[1] in WORDS else 'calm'} today" for c in clips
    }
    (tmp_path / "t.json").write_text(json.dumps({k: v for k, v in transcripts.items() if k != clips[-1]}))
    args = ["extract-text", str(encoder), "--transcripts", str(tmp_path / "t.json"), "--shards", str(root)]
    assert cli(args) == 2  # the last clip has no transcript: named, nothing half-written for its shard
    assert clips[-1] in capsys.readouterr().err
    (tmp_path / "t.json").write_text(json.dumps(transcripts))
    assert cli(args) == 0
    vectors = {}
    for shard in read_index(root)["shards"]:
        sidecar = FeatureSidecar(feature_path(root / shard["name"], TEXT))
        assert sorted(sidecar.clip_ids) == sorted(shard["clips"]) and sidecar.meta["dim"] == 16
        vectors |= {c: sidecar[c] for c in shard["clips"]}
    assert all(v.shape == (16,) and np.isfinite(v).all() for v in vectors.values())
    by_text: dict[str, list[np.ndarray]] = {}
    for clip, text in transcripts.items():
        by_text.setdefault(text, []).append(vectors[clip])
    assert len(by_text) > 1
    for same in by_text.values():  # the same words give the same vector; different words differ
        assert all(np.allclose(v, same[0], atol=1e-6) for v in same)
    firsts = [v[0] for v in by_text.values()]
    assert min(np.abs(a - b).max() for i, a in enumerate(firsts) for b in firsts[i + 1 :]) > 1e-4
    stamps = {p: p.stat().st_mtime_ns for p in root.glob("*" + TEXT)}
    assert cli(args) == 0 and {p: p.stat().st_mtime_ns for p in root.glob("*" + TEXT)} == stamps  # resumable
