"""Out-of-sample probes and the disentanglement score: known structure in, known numbers out."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metrics.functional.disentanglement import (
    FACTORS,
    ProbeData,
    chance_corrected,
    disentanglement_score,
    fit_ridge,
    logistic_probe_acc,
    probe_table,
    r2_score,
    ridge_probe_r2,
)


def _factors(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    t = np.arange(n) / 25.0
    phase = rng.uniform(0, 6, 4)
    return {
        "mouth_open": np.clip(np.sin(2 * np.pi * 3.1 * t + phase[0]), 0, None),
        "yaw": 8 * np.sin(2 * np.pi * 0.4 * t + phase[1]),
        "pitch": 5 * np.sin(2 * np.pi * 0.27 * t + phase[2]),
        "roll": 4 * np.sin(2 * np.pi * 0.33 * t + phase[3]),
    }


def _speaker(rng: np.random.Generator, name: str, emotions: int = 4, n: int = 150) -> ProbeData:
    """Frames of one speaker whose coefficient groups encode the factors linearly, each in its own group.

    mouth: 20 = mixing(mouth_open) + a speaker offset + noise; pose: 6 = mixing(yaw, pitch, roll) + noise;
    exp: 10 = a per-emotion code + noise. Mixing matrices are shared by all speakers (seeded separately).
    """
    mix = np.random.default_rng(123)
    a_mouth, a_pose, codes = (
        mix.normal(size=(1, 20)),
        mix.normal(size=(3, 6)),
        mix.normal(size=(emotions, 10)),
    )
    rows = []
    for emo in range(emotions):
        f = _factors(rng, n)
        mouth = (
            f["mouth_open"][:, None] @ a_mouth + rng.normal(size=20) * 0.1 + rng.normal(size=(n, 20)) * 0.05
        )
        pose = np.stack([f["yaw"], f["pitch"], f["roll"]], 1) @ a_pose + rng.normal(size=(n, 6)) * 0.05
        exp = codes[emo] + rng.normal(size=(n, 10)) * 0.3
        rows.append((mouth, pose, exp, f, np.full(n, emo)))
    return ProbeData(
        coeffs={
            "mouth": np.concatenate([r[0] for r in rows]),
            "pose": np.concatenate([r[1] for r in rows]),
            "exp": np.concatenate([r[2] for r in rows]),
        },
        factors={k: np.concatenate([r[3][k] for r in rows]) for k in FACTORS},
        emotion=np.concatenate([r[4] for r in rows]),
        speaker=np.full(emotions * n, name),
    )


def _join(parts: list[ProbeData]) -> ProbeData:
    return ProbeData(
        coeffs={g: np.concatenate([p.coeffs[g] for p in parts]) for g in parts[0].coeffs},
        factors={f: np.concatenate([p.factors[f] for p in parts]) for f in FACTORS},
        emotion=np.concatenate([p.emotion for p in parts]),
        speaker=np.concatenate([p.speaker for p in parts]),
    )


def test_linear_group_is_read_out_out_of_sample_and_noise_is_not() -> None:
    rng = np.random.default_rng(0)
    train = _join([_speaker(rng, s) for s in ("A", "B", "C")])
    test = _speaker(rng, "D")
    table = probe_table(train, test)
    r2, acc = table["r2"], table["emotion_probe_acc"]
    assert r2["mouth"]["mouth_open"] > 0.95
    assert min(r2["pose"][f] for f in ("yaw", "pitch", "roll")) > 0.95
    # groups that do not encode a factor: near zero or negative out of sample
    assert max(r2["mouth"][f] for f in ("yaw", "pitch", "roll")) < 0.1
    assert max(r2[g]["mouth_open"] for g in ("pose", "exp")) < 0.1
    assert max(r2["exp"][f] for f in FACTORS) < 0.1
    assert acc["exp"] > 0.95
    assert max(acc["mouth"], acc["pose"]) < 0.5  # chance 0.25
    score = disentanglement_score(r2, acc, 4)
    assert score > 0.85


def test_pure_noise_has_no_out_of_sample_r2_although_in_sample_fits() -> None:
    """20 noise features 'explain' a factor in sample; out of sample the probe is at or below zero."""
    rng = np.random.default_rng(1)
    x_tr, x_te = rng.normal(size=(60, 20)), rng.normal(size=(200, 20))
    y_tr, y_te = rng.normal(size=60), rng.normal(size=200)
    groups = np.repeat(np.arange(3), 20)
    probe = fit_ridge(x_tr, y_tr, groups)
    in_sample = r2_score(y_tr, probe.predict(x_tr))
    out = ridge_probe_r2(x_tr, y_tr, x_te, y_te, groups)
    assert out < 0.05
    assert out < in_sample


def test_ridge_on_an_exact_linear_map_recovers_it() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 5)) * [1, 10, 0.1, 3, 1]
    y = x @ np.array([0.5, -0.2, 4.0, 0.0, 1.0]) + 2.0
    probe = fit_ridge(x[:200], y[:200], np.repeat([0, 1], 100), alphas=(1e-8,))
    np.testing.assert_allclose(probe.predict(x[200:]), y[200:], atol=1e-4)
    assert r2_score(y[200:], probe.predict(x[200:])) == pytest.approx(1.0, abs=1e-8)


def test_r2_score_matches_the_definition() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([1.5, 2.0, 2.0, 5.0])
    assert r2_score(y, pred) == pytest.approx(1 - (0.25 + 0 + 1 + 1) / 5.0)
    assert math.isnan(r2_score(np.ones(4), pred))


def test_logistic_probe_separates_separable_classes() -> None:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 4)) * 5
    labels = np.repeat(np.arange(3), 50)
    x = centres[labels] + rng.normal(size=(150, 4))
    assert logistic_probe_acc(x[::2], labels[::2], x[1::2], labels[1::2]) > 0.95
    noise = rng.normal(size=(150, 4))
    assert logistic_probe_acc(noise[::2], labels[::2], noise[1::2], labels[1::2]) < 0.7


def test_score_arithmetic_by_hand() -> None:
    r2 = {
        "mouth": {"mouth_open": 0.9, "yaw": 0.3, "pitch": -2.0, "roll": 0.0},
        "pose": {"mouth_open": 0.1, "yaw": 0.8, "pitch": 0.6, "roll": 1.4},
        "exp": {"mouth_open": -0.5, "yaw": 0.5, "pitch": 0.2, "roll": float("nan")},
    }
    acc = {"mouth": 0.25, "pose": 0.5, "exp": 1.0}
    # mouth_open: 0.9 - max(0.1, 0) = 0.8; yaw: 0.8 - 0.5 = 0.3; pitch: 0.6 - max(0, 0.2) = 0.4;
    # roll: min(1.4, 1) - 0 (nan skipped) = 1.0; emotion (4 classes): 1 - max(0, 1/3) = 2/3
    expected = (0.8 + 0.3 + 0.4 + 1.0 + 2 / 3) / 5
    assert disentanglement_score(r2, acc, 4) == pytest.approx(expected)
    assert disentanglement_score(r2) == pytest.approx((0.8 + 0.3 + 0.4 + 1.0) / 4)
    assert chance_corrected(0.25, 4) == pytest.approx(0.0)
    swapped = {"mouth": r2["pose"], "pose": r2["mouth"], "exp": r2["exp"]}
    assert disentanglement_score(swapped) < 0


def test_builtin_factors_as_coefficients() -> None:
    """The built-in data's own factors, packed as coefficients: the right packing scores high, a swap low."""
    from datamodules.shards import iter_clips
    from datamodules.synthetic import ensure_builtin

    root = ensure_builtin()
    rng = np.random.default_rng(4)

    def load(split: str, swap: bool) -> ProbeData:
        rows = []
        for clip in iter_clips(root, split):
            f = {k: np.asarray(clip.meta["factors"][k], np.float64) for k in FACTORS}
            n = len(f["mouth_open"])
            emo = int(clip.meta["factors"]["emotion_id"])
            onehot = np.eye(8)[np.full(n, emo)]
            mouth = np.column_stack([f["mouth_open"], rng.normal(size=(n, 3)) * 0.01])
            pose = np.column_stack([f["yaw"], f["pitch"], f["roll"]])
            exp = np.column_stack([onehot, rng.normal(size=(n, 2)) * 0.01])
            if swap:
                mouth, pose = np.column_stack([pose, rng.normal(size=(n, 1)) * 0.01]), mouth
            rows.append((mouth, pose, exp, f, np.full(n, emo), np.full(n, clip.meta["speaker"])))
        return ProbeData(
            coeffs={g: np.concatenate([r[i] for r in rows]) for i, g in enumerate(("mouth", "pose", "exp"))},
            factors={k: np.concatenate([r[3][k] for r in rows]) for k in FACTORS},
            emotion=np.concatenate([r[4] for r in rows]),
            speaker=np.concatenate([r[5] for r in rows]),
        )

    right = probe_table(load("train", False), load("test", False))
    assert right["r2"]["mouth"]["mouth_open"] > 0.99
    assert right["emotion_probe_acc"]["exp"] == 1.0
    assert disentanglement_score(right["r2"], right["emotion_probe_acc"], 4) > 0.8
    wrong = probe_table(load("train", True), load("test", True))
    assert disentanglement_score(wrong["r2"], wrong["emotion_probe_acc"], 4) < 0
