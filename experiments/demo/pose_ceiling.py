"""How much of each head angle the built-in frames show, absolute and relative to its clip.

A clip's tube crop follows the face, and in the built-in data the whole picture moves with the head, so a
clip's mean yaw and pitch (rendered as shifts) are cropped away; what is left of them shows the angle
relative to the clip. This prints held-out R² of the learning table's ridge probes (fitted on the training
speakers, scored on the held-out ones) for the mouth opening, yaw, pitch and roll, once against
the absolute angle (what the learning table asks) and once against the angle minus its clip's mean:

* on the pixels (32², PCA 64, centred per speaker as in the data test): what a linear reader of the frames reaches;
* with ``--run OUT`` (an `edtalk quickstart` output): on each coefficient group of the job's final
  generator (mouth 20, pose 6, expression 10).

    OMP_NUM_THREADS=1 .venv/bin/python experiments/demo/pose_ceiling.py --run outputs/quickstart

Used for experiments/demo/README.md, section "Where pitch shows (session 20)".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

FACTORS = ("mouth_open", "yaw", "pitch", "roll")


def clips(shards: Path, split: str) -> list[tuple[object, np.ndarray, str]]:
    """(clip, T x 4 factors, speaker) of every clip of `split`."""
    from datamodules.shards import iter_clips

    out = []
    for clip in iter_clips(shards, split):
        f = clip.meta["factors"]
        t = min(clip.num_frames, len(f["mouth_open"]))
        out.append(
            (clip, np.stack([np.asarray(f[k][:t], np.float64) for k in FACTORS], 1), clip.meta["speaker"])
        )
    return out


def probe(
    features: dict[str, np.ndarray],
    factors: dict[str, np.ndarray],
    means: dict[str, np.ndarray],
    speakers: np.ndarray,
) -> dict[str, list[float]]:
    """{"absolute": [R² per factor], "in clip": [...]}: the learning table's ridge probe (alpha chosen by
    leave-one-speaker-out on the training speakers), fitted on train, scored on test."""
    from metrics.functional.disentanglement import ridge_probe_r2

    out = {}
    for name, shift in (("absolute", 0.0), ("in clip", 1.0)):
        y = {s: factors[s] - shift * means[s] for s in ("train", "test")}
        out[name] = [
            ridge_probe_r2(features["train"], y["train"][:, k], features["test"], y["test"][:, k], speakers)
            for k in range(len(FACTORS))
        ]
    return out


def centred(x: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    """x with each speaker's mean row taken away."""
    x = x.copy()
    for s in np.unique(speakers):
        x[speakers == s] -= x[speakers == s].mean(0)
    return x


def main() -> None:
    from PIL import Image
    from sklearn.decomposition import PCA

    from datamodules.synthetic import ensure_builtin

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, help="an `edtalk quickstart` output folder (its final generator)")
    p.add_argument("--shards", type=Path, help="shard folder (default: the built-in dataset)")
    args = p.parse_args()
    torch.set_num_threads(1)
    shards = args.shards or ensure_builtin()
    data = {s: clips(shards, s) for s in ("train", "test")}
    factors = {s: np.concatenate([y for _, y, _ in data[s]]) for s in data}
    means = {s: np.concatenate([np.tile(y.mean(0), (len(y), 1)) for _, y, _ in data[s]]) for s in data}
    speakers = {s: np.concatenate([[spk] * len(y) for _, y, spk in data[s]]) for s in data}

    def show(name: str, res: dict[str, list[float]]) -> None:
        cells = " | ".join(f"{k}: " + " ".join(f"{v:.2f}" for v in vals) for k, vals in res.items())
        print(f"{name:<8} (opening yaw pitch roll)  {cells}")

    pixels = {}
    for s in data:
        rows = []
        for clip, y, _ in data[s]:
            for i in range(len(y)):
                img = Image.fromarray(clip.frame(i)).resize((32, 32), Image.BILINEAR)  # type: ignore[attr-defined]
                rows.append(np.asarray(img, np.float32).ravel() / 255)
        pixels[s] = np.stack(rows)
    pca = PCA(64, random_state=0).fit(pixels["train"])
    pcs = {
        s: centred(pca.transform(v), speakers[s]) for s, v in pixels.items()
    }  # as the data test: per speaker
    show("pixels", probe(pcs, factors, means, speakers["train"]))
    if args.run is None:
        return

    from edtalk import runs
    from edtalk.io import from_uint8
    from edtalk.weights import load_generator
    from metrics.disentanglement import clip_coefficients

    gen = load_generator(runs.checkpoint(args.run / "runs" / "expression" / "debug")).eval()
    coeffs: dict[str, dict[str, np.ndarray]] = {}
    for s in data:
        per = []
        for clip, y, _ in data[s]:
            frames = from_uint8(torch.from_numpy(clip.frames(range(len(y))))).float()  # type: ignore[attr-defined]
            per.append(clip_coefficients(gen, frames))
        coeffs[s] = {g: np.concatenate([c[g] for c in per]) for g in per[0]}
    for group in ("mouth", "pose", "exp"):
        show(group, probe({s: coeffs[s][group] for s in data}, factors, means, speakers["train"]))


if __name__ == "__main__":
    main()
