"""How well can anything tell in-sync from shifted (mouth, speech) windows of the built-in held-out speakers?

`sync_acc` (issue 30 asks >= 0.9) is the lip-sync expert's accuracy on pairs drawn as its validation draws
them: a 15-frame piece of a held-out clip, one 5-frame window of it, and the mel window of the same 5
frames (in sync) or of 5 frames at least 5 frames away (shifted); each pair is judged alone. This prints
what readers that are told the mouth opening exactly (the data's own per-frame factor) reach on such pairs,
fitted on the training speakers' pairs and scored on the held-out ones:

* ``waveform``: the speech's loudness computed from the waveform (the formula that made the opening) and
  compared with the opening up to the clip's unknown scale; the threshold on the residual is fitted on the
  training pairs. What the data allows when the loudness is read without error.
* ``mel, learned``: a gradient-boosted classifier on the opening and the mel window's loudness per column
  (what the expert hears: the mel windows), i.e. a reader that has to learn the speech's loudness from the
  training voices.
* ``mel, linear loudness``: the same classifier on the loudness contour a ridge regression reads from each
  frame's 80 mel bins (fitted on the training speakers' frames against the waveform's log loudness).
* ``mel, summed power``: the same classifier on each column's log power summed over the 80 bins (the
  features' dB normalisation undone), a fixed formula with nothing fitted to the voices.
* ``--voices K``: the same learned reader fitted on the first K training speakers only (the trend says
  what more voices would give).

    OMP_NUM_THREADS=1 .venv/bin/python experiments/demo/sync_ceiling.py [--shards DIR] [--voices 2 4]

Used for experiments/demo/README.md, section "The lip-sync expert's ceiling on the built-in data (session 21)".
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edtalk.mel import FPS, MEL_FRAMES_PER_SECOND

SEGMENT, WINDOW, MIN_SHIFT = 15, 5, 5  # the demo syncnet's clip_frames, window and model.min_shift
COLUMNS_PER_FRAME = MEL_FRAMES_PER_SECOND / FPS  # 3.2 mel columns under each video frame


def load(shards: Path, split: str) -> list[dict[str, object]]:
    """Per clip: speaker, opening T, waveform loudness T, mel windows T x 80 x 16."""
    from datamodules.samplers import mel_windows_of
    from datamodules.shards import iter_clips
    from datamodules.synthetic import frame_loudness  # the loudness the built-in opening is made from

    out = []
    for clip in iter_clips(shards, split):
        opening = np.asarray(clip.meta["factors"]["mouth_open"], np.float64)
        mel = mel_windows_of(clip)[:, 0]
        t = min(len(opening), len(mel), clip.num_frames)
        out.append(
            {
                "speaker": clip.meta["speaker"],
                "opening": opening[:t],
                "loud": frame_loudness(clip.wav().astype(np.float64), t),
                "mel": mel[:t],
            }
        )
    return out


def pairs(clips: list[dict[str, object]], n: int, seed: int) -> list[tuple[dict[str, object], int, int]]:
    """n (clip, first frame, shifted first frame) draws, as the syncnet's validation draws them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        clip = clips[rng.integers(len(clips))]
        seg = int(rng.integers(0, len(clip["opening"]) - SEGMENT + 1))  # type: ignore[arg-type]
        start = int(rng.integers(0, SEGMENT - WINDOW + 1))
        choices = [c for c in range(SEGMENT - WINDOW + 1) if abs(c - start) >= MIN_SHIFT]
        out.append((clip, seg + start, seg + choices[int(rng.integers(len(choices)))]))
    return out


def residual(opening: np.ndarray, loud: np.ndarray) -> float:
    """Mean |opening - min(k loudness, 1)| at the best scale k (the clip's scale is not known from a window)."""
    ks = np.geomspace(1e-1, 1e3, 400)[:, None] / (loud.max() + 1e-9)  # -> 400 x 1
    return float(np.abs(opening - np.minimum(ks * loud, 1.0)).mean(1).min())


def waveform_reader(train: list, test: list) -> tuple[float, float]:
    """(train, test) accuracy of the residual threshold fitted on the training pairs."""

    def scores(draws: list) -> tuple[np.ndarray, np.ndarray]:
        res, label = [], []
        for clip, s, s2 in draws:
            o = clip["opening"][s : s + WINDOW]
            for start, y in ((s, 1), (s2, 0)):
                res.append(residual(o, clip["loud"][start : start + WINDOW]))
                label.append(y)
        return np.asarray(res), np.asarray(label)

    r_tr, y_tr = scores(train)
    r_te, y_te = scores(test)
    cut = max(np.quantile(r_tr, np.linspace(0.01, 0.99, 197)), key=lambda c: ((r_tr < c) == y_tr).mean())
    return float(((r_tr < cut) == y_tr).mean()), float(((r_te < cut) == y_te).mean())


def frame_columns(window: np.ndarray) -> np.ndarray:
    """80 x 16 mel window -> 5 x 80: the mean of the ~3 columns under each of its 5 frames."""
    centres = (round(COLUMNS_PER_FRAME * (j + 0.5)) for j in range(WINDOW))
    return np.stack([window[:, max(0, c - 1) : c + 2].mean(1) for c in centres])


def column_loudness(window: np.ndarray) -> np.ndarray:
    """The window's 16 columns' mean over the mel bins."""
    return window.mean(0)


def mel_energy(window: np.ndarray) -> np.ndarray:
    """The window's 16 columns' log power summed over the 80 bins (the Wav2Lip normalisation undone)."""
    from edtalk.mel import MAX_ABS_VALUE, MIN_LEVEL_DB, REF_LEVEL_DB

    db = (window + MAX_ABS_VALUE) / (2 * MAX_ABS_VALUE) * -MIN_LEVEL_DB + MIN_LEVEL_DB + REF_LEVEL_DB
    return np.log((10.0 ** (db / 10.0)).sum(0))


def ridge_loudness(clips: list) -> Callable[[np.ndarray], np.ndarray]:
    """A ridge read-out of each frame's log loudness from its 80 mel bins, fitted on `clips`' frames."""
    from sklearn.linear_model import RidgeCV

    x = np.stack([frame_columns(c["mel"][t])[WINDOW // 2] for c in clips for t in range(len(c["opening"]))])
    y = np.concatenate([np.log(c["loud"] + 1e-4) for c in clips])
    reg = RidgeCV(alphas=np.geomspace(1e-3, 1e3, 13)).fit(x, y)
    return lambda window: reg.predict(frame_columns(window))


def mel_reader(train: list, test: list, contour: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
    """(train, test) accuracy of a gradient-boosted classifier on [opening 5, the mel window's loudness
    contour (centred), its mean and spread]; `contour` reads the contour from an 80 x 16 window."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    def features(draws: list) -> tuple[np.ndarray, np.ndarray]:
        x, label = [], []
        for clip, s, s2 in draws:
            o = clip["opening"][s : s + WINDOW]
            for start, y in ((s, 1), (s2, 0)):
                loud = contour(clip["mel"][start + WINDOW // 2])  # window start+2: frames start..start+4
                x.append(np.concatenate([o, loud - loud.mean(), [loud.mean(), loud.std()]]))
                label.append(y)
        return np.asarray(x), np.asarray(label)

    x_tr, y_tr = features(train)
    x_te, y_te = features(test)
    clf = HistGradientBoostingClassifier(max_iter=400, random_state=0).fit(x_tr, y_tr)
    return float(clf.score(x_tr, y_tr)), float(clf.score(x_te, y_te))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", type=Path, default=None, help="a shard folder (default: the built-in data)")
    p.add_argument("--pairs", type=int, default=30000, help="training pairs of the learned reader")
    p.add_argument(
        "--voices", type=int, nargs="*", default=[], help="also fit on the first K training speakers"
    )
    args = p.parse_args()
    if args.shards is None:
        from datamodules.synthetic import ensure_builtin

        args.shards = ensure_builtin()
    train, test = load(args.shards, "train"), load(args.shards, "test")
    speakers = sorted({str(c["speaker"]) for c in train})
    held = sorted({str(c["speaker"]) for c in test})
    print(f"{len(train)} training clips ({len(speakers)} speakers), {len(test)} held-out ({', '.join(held)})")
    test_draws = pairs(test, 2000, 1)
    rows = [("waveform, scale-free", waveform_reader(pairs(train, 3000, 2), test_draws))]
    train_draws = pairs(train, args.pairs, 0)
    rows.append(
        (f"mel, learned ({len(speakers)} voices)", mel_reader(train_draws, test_draws, column_loudness))
    )
    rows.append(("mel, linear loudness, learned", mel_reader(train_draws, test_draws, ridge_loudness(train))))
    rows.append(("mel, summed power, learned", mel_reader(train_draws, test_draws, mel_energy)))
    for k in args.voices:
        keep = [c for c in train if c["speaker"] in speakers[:k]]
        rows.append(
            (
                f"mel, learned ({k} voices)",
                mel_reader(pairs(keep, args.pairs, 0), test_draws, column_loudness),
            )
        )
    print(f"{'reader (told the exact opening)':<34} {'train':>6} {'held-out':>9}")
    for name, (acc_tr, acc_te) in rows:
        print(f"{name:<34} {acc_tr:6.3f} {acc_te:9.3f}")


if __name__ == "__main__":
    main()
