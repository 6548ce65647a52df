"""Learning curve of one demo-profile stage: probe table and PSNR on the held-out speaker vs steps.

Trains STAGE exactly as `edtalk quickstart` does (experiments/<stage>.yaml + debug.yaml +
experiments/demo/<stage>.yaml, through `PlanRun.train` of the main plan), plus dotlist overrides, keeps a copy of the
generator every `--every` steps, then measures each copy and a random-init floor of the same
architecture: the out-of-sample disentanglement table (`metrics.disentanglement`), the video-driven
self-reconstruction PSNR on the first `--clips` test clips (`edtalk.apps.learning.clip_psnrs`) and the
stage's own val PSNR. Writes OUT/curve.json and prints one row per snapshot. Used for the numbers in
experiments/demo/README.md, e.g.

    OMP_NUM_THREADS=1 nice -n 19 timeout 3000 .venv/bin/python experiments/demo/curve.py mouth_pose \
        --out /tmp/learn/mp --steps 400 --every 100 init_from=/tmp/learn/rec/runs/reconstruct/debug/checkpoints/last.ckpt

Visual stages only (the ones with a generator).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import lightning as L
import torch

from edtalk import train as train_mod
from edtalk.apps.learning import clip_psnrs, floor_generator, target_checks
from edtalk.apps.quickstart import main_job


class Snapshots(L.Callback):
    """The stage's generator saved to `folder/step<N>.pt` every `every` training steps (and at step 0)."""

    def __init__(self, every: int, folder: Path) -> None:
        self.every, self.folder = every, folder
        folder.mkdir(parents=True, exist_ok=True)

    def save(self, step: int, module: L.LightningModule) -> None:
        gen: Any = copy.deepcopy(module.generator)
        torch.save(gen.cpu().eval(), self.folder / f"step{step}.pt")

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.save(0, module)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step % self.every == 0:
            self.save(trainer.global_step, module)


def load_snapshots(folder: Path) -> dict[int, Any]:
    """{step: generator} of every snapshot under `folder`."""
    files = {int(f.stem[4:]): f for f in folder.glob("step*.pt")}
    return {k: torch.load(files[k], weights_only=False) for k in sorted(files)}


def measure(gens: dict[str, Any], root: Path, clips: int) -> dict[str, dict[str, Any]]:
    """{name: {r2, emotion_probe_acc, disentanglement_score, psnr_video, targets}} on the test speaker."""
    from metrics.disentanglement import collect, scores

    train, test = collect(gens, root, "train"), collect(gens, root, "test")
    out = {}
    for name, gen in gens.items():
        row = scores(train[name], test[name])
        row["psnr_video"] = clip_psnrs(gen, None, root, clips)[0]
        checks = target_checks(row)
        row["pose_r2_mean"] = checks["r2.pose.yaw_pitch_roll"][0]
        row["off_diagonal_max"] = checks["r2.off_diagonal_max"][0]
        out[name] = row
    return out


def fmt(name: str, row: dict[str, Any]) -> str:
    """One line: PSNR, score, the intended R² and the largest off-diagonal ones, emotion probes."""
    r2, acc = row["r2"], row["emotion_probe_acc"]
    ypr = ("yaw", "pitch", "roll")
    others = {g: r2[g]["mouth_open"] for g in r2 if g != "mouth"} | {
        "mouth>ypr": max(r2["mouth"][f] for f in ypr)
    }
    return (
        f"{name:>8} psnr {row['psnr_video']:6.2f} score {row['disentanglement_score']:+.3f} "
        f"mouth>open {r2['mouth']['mouth_open']:+.2f} pose>ypr {row['pose_r2_mean']:+.2f} "
        f"(y {r2['pose']['yaw']:+.2f} p {r2['pose']['pitch']:+.2f} r {r2['pose']['roll']:+.2f}) "
        f"offmax {row['off_diagonal_max']:+.2f} [{' '.join(f'{k} {v:+.2f}' for k, v in others.items())}] "
        f"emo {' '.join(f'{g} {a:.2f}' for g, a in acc.items())}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage")
    p.add_argument("overrides", nargs="*", help="dotlist overrides (init_from=..., data.batch_size=8, ...)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--clips", type=int, default=2)
    p.add_argument("--profile", default="demo")
    p.add_argument("--seed", type=int, default=0, help="the job's seed (`quickstart --seed`: stage and data order)")
    args = p.parse_intermixed_args()
    torch.set_num_threads(1)
    from datamodules.synthetic import ensure_builtin

    root = ensure_builtin()
    snaps = Snapshots(args.every, args.out / "snapshots")
    original = train_mod.build_callbacks
    train_mod.build_callbacks = lambda cfg, run_dir: [*original(cfg, run_dir), snaps]
    job = main_job(args.out, log=print, profile=args.profile, seed=args.seed)
    run = job.train(args.stage, args.steps, args.overrides)
    train_mod.build_callbacks = original
    saved = load_snapshots(snaps.folder)  # a rerun of a finished stage measures its snapshots again
    gens = {f"step{k}": g for k, g in saved.items()}
    gens["floor"] = floor_generator(saved[max(saved)])
    table = measure(gens, root, args.clips)
    val = {k: v for k, v in run.metrics.items() if k.startswith("val/")}
    summary = {
        "stage": args.stage,
        "overrides": args.overrides,
        "steps": args.steps,
        "table": table,
        "val": val,
    }
    (args.out / "curve.json").write_text(json.dumps(summary, indent=1, default=float))
    for name, row in table.items():
        print(fmt(name, row))
    print("last val:", json.dumps(val), f"train seconds {run.seconds:.0f} (inflated: shared CPU)")


if __name__ == "__main__":
    main()
