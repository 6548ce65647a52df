"""The built-in data carries what the model must learn: simple linear probes, fitted on the training
speakers and scored on the held-out ones, read the emotion from the pixels (speaker-normalised) and
from per-clip prosody, and the mouth opening and head pose from the pixels.

If these fail, nothing downstream can learn the factor: the data is the first thing to check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SIZE = 32  # probe resolution (the emotion cue must survive down-sampling; the model trains at 64)


def _frames(root: Path, every: int = 5) -> dict[str, np.ndarray]:
    """Every `every`-th frame of every clip at SIZE², RGB, with its speaker, split, emotion and factors."""
    from PIL import Image

    from datamodules.shards import iter_clips

    rows: dict[str, list] = {
        k: [] for k in ("x", "speaker", "test", "emotion", "mouth_open", "ypr", "clip_ypr")
    }
    for split in ("train", "test"):
        for clip in iter_clips(root, split):
            f = clip.meta["factors"]
            mean_ypr = [float(np.mean(f[k])) for k in ("yaw", "pitch", "roll")]
            for i in range(0, clip.num_frames, every):
                img = Image.fromarray(clip.frame(i)).resize((SIZE, SIZE), Image.BILINEAR)
                rows["x"].append(np.asarray(img, np.float32).ravel() / 255)
                rows["speaker"].append(clip.meta["speaker"])
                rows["test"].append(split == "test")
                rows["emotion"].append(f["emotion_id"])
                rows["mouth_open"].append(f["mouth_open"][i])
                rows["ypr"].append([f["yaw"][i], f["pitch"][i], f["roll"][i]])
                rows["clip_ypr"].append(mean_ypr)
    return {k: np.asarray(v) for k, v in rows.items()}


def _speaker_normalised(x: np.ndarray, speaker: np.ndarray) -> np.ndarray:
    out = x.copy()
    for s in np.unique(speaker):
        out[speaker == s] -= x[speaker == s].mean(0)
    return out


def pixel_probes(root: Path) -> dict[str, float]:
    """Held-out accuracy / R² of linear probes on speaker-normalised pixels."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import r2_score

    d = _frames(root)
    x = _speaker_normalised(d["x"], d["speaker"])
    tr, te = ~d["test"], d["test"]
    pca = PCA(64, random_state=0).fit(x[tr])
    z = pca.transform(x)
    emo = LogisticRegression(C=1.0, max_iter=2000).fit(z[tr], d["emotion"][tr])
    out = {"emotion_acc": float((emo.predict(z[te]) == d["emotion"][te]).mean())}
    ypr, in_clip = d["ypr"], d["ypr"] - d["clip_ypr"]
    factors = {"mouth_open": d["mouth_open"], "yaw": ypr[:, 0], "pitch": ypr[:, 1], "roll": ypr[:, 2]}
    factors["pitch_in_clip"] = in_clip[:, 1]  # relative to its clip's mean
    for name, y in factors.items():
        ridge = Ridge(alpha=1.0).fit(z[tr], y[tr])
        out[f"{name}_r2"] = float(r2_score(y[te], ridge.predict(z[te])))
    return out


def audio_probe(root: Path) -> float:
    """Held-out accuracy of a logistic regression on per-clip prosody statistics, not speaker-normalised:
    pitch range, loudness and rate (the median pitch is the voice's: a speaker proxy, left out)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from datamodules.shards import iter_clips
    from datamodules.synthetic import audio_statistics

    feats, labels, test = [], [], []
    for split in ("train", "test"):
        for clip in iter_clips(root, split):
            stats = audio_statistics(clip.wav())
            feats.append([stats["f0_spread"], stats["loudness"], stats["rate"]])
            labels.append(clip.meta["factors"]["emotion_id"])
            test.append(split == "test")
    x, y, te = np.asarray(feats), np.asarray(labels), np.asarray(test)
    scaler = StandardScaler().fit(x[~te])
    probe = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(x[~te]), y[~te])
    return float((probe.predict(scaler.transform(x[te])) == y[te]).mean())


@pytest.mark.slow
def test_emotion_mouth_and_pose_are_readable_from_pixels(builtin: Path) -> None:
    probes = pixel_probes(builtin)
    assert probes["emotion_acc"] >= 0.9, probes
    assert probes["mouth_open_r2"] >= 0.6, probes
    # each angle on its own (measured 0.90 / 0.59 / 0.98 at 32²): the whole picture moves with the head and
    # the clip's tube crop follows the face, so a clip's mean yaw and pitch (shifts) are cropped away; pitch,
    # the smaller shift, shows mostly relative to its clip (0.83), which bounds the learning table's
    # pose -> pitch (experiments/demo/README.md, "Where pitch shows", session 20)
    assert min(probes["yaw_r2"], probes["roll_r2"]) >= 0.8, probes
    assert probes["pitch_r2"] >= 0.45 and probes["pitch_in_clip_r2"] >= 0.7, probes


@pytest.mark.slow
def test_emotion_is_audible_independent_of_the_speaker(builtin: Path) -> None:
    import shutil

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed: the built-in speech is a synthetic vowel signal")
    assert audio_probe(builtin) >= 0.9


def test_clip_intensity_and_prosody() -> None:
    """Neutral clips have intensity 0, emotional ones a fixed per-clip value in INTENSITY; the prosody
    moves from neutral's towards the emotion's row in proportion to it."""
    from datamodules.synthetic import INTENSITY, PROSODY, ClipSpec, clip_specs, prosody

    specs = clip_specs()
    assert {s.intensity for s in specs if s.emotion == "neutral"} == {0.0}
    values = [s.intensity for s in specs if s.emotion != "neutral"]
    assert all(INTENSITY[0] <= v <= INTENSITY[1] for v in values) and len(set(values)) > len(values) // 2
    assert ClipSpec("S01", "sad", 1, 5).intensity == ClipSpec("S01", "sad", 2, 5).intensity  # seed fixes it
    half = prosody("angry", 0.5)  # the voice follows the intensity half as steeply: 3/4 of the way
    assert half["rate"] == pytest.approx((PROSODY["neutral"]["rate"] + 3 * PROSODY["angry"]["rate"]) / 4)
    assert prosody("sad", 1.0) == PROSODY["sad"]
    assert prosody("happy", 0.0) == PROSODY["neutral"]


def test_audio_statistics_read_pitch_loudness_and_rate() -> None:
    """The prosody statistics on signals with a known pitch, level and syllable rate."""
    from datamodules.synthetic import audio_statistics

    t = np.arange(32000) / 16000
    syllables = (np.sin(2 * np.pi * 4 * t) > 0).astype(np.float64)  # 4 syllables a second
    glide = 2 * np.pi * np.cumsum(120 * 2 ** (t / 2)) / 16000  # 120 Hz rising an octave over 2 s
    low = audio_statistics((0.1 * np.sin(2 * np.pi * 120 * t) * syllables).astype(np.float32))
    high = audio_statistics((0.4 * np.sin(2 * np.pi * 240 * t) * syllables).astype(np.float32))
    wide = audio_statistics((0.1 * np.sin(glide) * syllables).astype(np.float32))
    assert high["f0_median"] - low["f0_median"] == pytest.approx(12, abs=0.5)  # one octave
    assert low["f0_spread"] < 0.5 < 4 < wide["f0_spread"] < 8  # flat vs an octave glide (IQR ~ 6 st)
    assert high["loudness"] - low["loudness"] == pytest.approx(20 * np.log10(4), abs=0.5)
    slow = audio_statistics(
        (0.1 * np.sin(2 * np.pi * 120 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    )
    assert low["rate"] / slow["rate"] == pytest.approx(2, abs=0.4)  # twice the syllables, twice the onsets


def test_a_dataset_built_by_other_code_is_stale(
    builtin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build stamp records a fingerprint of the code that makes the shards (the detector's small-face
    retry changed some clips' landmarks while an older build still counted as current): a stamp of other
    code, or of none, is not built, so `ensure_builtin` builds again; today's build is."""
    import json

    from datamodules import synthetic

    made = json.loads((builtin.parent / "build.json").read_text())
    assert made["version"] == synthetic.BUILD_VERSION and made["code"] == synthetic.build_fingerprint()
    assert synthetic.is_built(builtin.parent)
    for stamp in ({"version": synthetic.BUILD_VERSION, "clips": 64}, {**made, "code": "0" * 16}, {}):
        (tmp_path / "build.json").write_text(json.dumps(stamp))
        assert not synthetic.is_built(tmp_path)
    assert "datamodules/preprocess/track.py" in synthetic.BUILD_SOURCES
    today = synthetic.build_fingerprint()
    monkeypatch.setattr(synthetic, "BUILD_SOURCES", synthetic.BUILD_SOURCES[:-1])
    assert synthetic.build_fingerprint() != today  # each source counts


def test_a_stamp_without_its_shards_is_not_built(
    builtin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build interrupted after it removed the old shards (a killed job) left today's stamp beside no shards,
    and `ensure_builtin` returned a folder without an index: the stamp now goes first and counts only
    beside the shard index it describes."""
    import shutil

    from datamodules import synthetic

    shutil.copy(builtin.parent / "build.json", tmp_path / "build.json")
    assert not synthetic.is_built(tmp_path)  # today's stamp, no shards
    (tmp_path / "shards").mkdir()
    shutil.copy(builtin / "index.json", tmp_path / "shards" / "index.json")
    assert synthetic.is_built(tmp_path)

    def killed(root: Path, workers: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "build_raw", killed)
    with pytest.raises(KeyboardInterrupt):
        synthetic.build(tmp_path)
    assert not (tmp_path / "build.json").exists() and not synthetic.is_built(tmp_path)
