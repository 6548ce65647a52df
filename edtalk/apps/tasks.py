"""The main job's measurement tasks on the built-in data: evaluation, the learning table, emotion vectors.

Each task takes the `PlanRun` (its trained stages, the shards, the options) and returns what it adds to
the run's results (`evaluation`; `learning` + `learning_curve`; `emotion_vectors`), which the report reads.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edtalk import runs
from edtalk.apps.runner import fmt_metrics

# CSIM of the evaluation from this many evenly spaced frames per clip: dlib's face descriptor was 67 of the
# evaluation's 138 s on every frame (`metrics.runner.MethodScorer`; `edtalk evaluate` keeps every frame).
CSIM_FRAMES = 8


def evaluate(job: Any) -> dict[str, Any]:
    """Video- and audio-driven reconstruction of `job.clips` built-in test clips through `metrics`."""
    from itertools import islice

    from metrics.render import render_split
    from metrics.runner import evaluate, ground_truth, load_judges, write_report

    ckpts = job.checkpoints()
    generator, audio2lip, shards = ckpts["generator"], ckpts.get("audio2mouth"), job.shards
    job.step("evaluate", f"video- and audio-driven reconstruction of {job.clips} built-in test clips")
    out = job.out / "evaluation"
    folders, extras = render_split(
        generator, "builtin", shards, out, job.clips, audio2lip=audio2lip, probes=False
    )
    methods = {"edtalk_video": folders["video"]} | (
        {"edtalk_audio": folders["audio"]} if "audio" in folders else {}
    )
    judges_dir = job.out / "weights"  # the emotion judge we trained; metrics without judges are skipped
    judges_dir.mkdir(exist_ok=True)
    trained = job.run_dirs()
    judge = runs.checkpoint(trained.get("emotion_classifier", Path()), "emotion_classifier.pt")
    if judge.is_file():
        shutil.copyfile(judge, judges_dir / "emotion_classifier.ckpt")
    judges = load_judges(judges_dir)
    clips = islice(ground_truth("builtin", shards), job.clips)
    report = evaluate(methods, clips, judges, lse_crop=False, log=lambda s: None, csim_frames=CSIM_FRAMES)
    report.extras.update(extras)
    files = write_report(report, out)
    evaluation = {
        "summary": report.summary,
        "skipped": report.skipped,
        "table": files["table"],
        "plots": sorted((out / "plots").glob("*.png")),
    }
    job.step("evaluate", "done " + fmt_metrics(report.summary["edtalk_video"]))
    return {"evaluation": evaluation}


def learning(job: Any) -> dict[str, Any]:
    """The learning table (ours vs random-init floor) and the disentanglement curve over the generator's
    stages (`edtalk.apps.learning`); the floors are seeded with the job's seed."""
    import torch

    from edtalk.apps.learning import floor_audio2lip, floor_generator, learning_table
    from edtalk.weights import load_generator
    from metrics.disentanglement import collect, probe_heatmap, scores

    job.step("learning", "probes on the training speakers, scored on the held-out speaker")
    ckpts, shards = job.checkpoints(), job.shards
    ours = load_generator(ckpts["generator"]).eval()
    a2l_path = ckpts.get("audio2mouth")
    a2l: dict[str, torch.nn.Module | None] = {"ours": None, "floor": None}
    if a2l_path is not None:
        from edtalk.pipeline import load_audio_model

        a2l = {"ours": load_audio_model(a2l_path, "audio2lip"), "floor": floor_audio2lip(a2l_path, job.seed)}
    floor = floor_generator(ours, job.seed)
    curve_gens, steps = stage_generators(job)
    last = job.plan.generator
    # one pass over the frames for every generator (ours = the last visual stage's, floor = the curve's step 0)
    gens = {"ours": ours, "floor": floor} | {k: g for k, g in curve_gens.items() if k != last}
    train, test = cached_probes(job, gens)  # what `learning_probes` collected in the second process
    todo = {k: g for k, g in gens.items() if k not in train}
    if len(todo) < len(gens):
        job.step(
            "learning", f"probe data of {', '.join(sorted(set(gens) - set(todo)))} from the second process"
        )
    if todo:
        train |= collect(todo, shards, "train")
        test |= collect(todo, shards, "test")
    pair = {"ours": ours, "floor": floor}
    collected = ({k: train[k] for k in pair}, {k: test[k] for k in pair})
    table = learning_table(pair, a2l, job.run_dirs(), shards, job.clips, collected=collected, seed=job.seed)
    row = {**table["ours"], "floor": table["floor"]}
    probe_heatmap({k: table[k] for k in ("ours", "floor")}, job.out / "plots" / "disentanglement_probes.png")
    alias = {"init": "floor", last: "ours"}
    curve = [
        {
            "stage": k,
            "step": steps[k],
            "score": scores(train[alias.get(k, k)], test[alias.get(k, k)])["disentanglement_score"],
        }
        for k in ["init", *curve_gens]
    ]
    job.step("learning", "done " + fmt_learning(row))
    return {"learning": row, "learning_curve": curve}


PROBES_FILE = Path("learning") / "probes.pkl"  # under the run's `out`: `learning_probes` -> `learning`


def shards_identity(shards: Path | None) -> list[Any]:
    """The shard files (name, size, mtime) the probe data were read from."""
    if shards is None:
        return []
    files = sorted(Path(shards).glob("*.tar"))
    return [str(Path(shards).resolve())] + [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]


def learning_probes(job: Any) -> dict[str, Any]:
    """Early task (second process, beside the last visual stage): the probe data (`collect`) of the generators
    the learning table reads that exist before the plan's last visual stage ends — the stages before it, and
    the random-init floor of its architecture (composed from its config, seeded as `floor_generator`) — in
    `PROBES_FILE` for `learning`, which takes an entry only where the weights' sha256 and the shards
    match and collects the rest itself. Returns no results (an early task writes files only)."""
    from edtalk.apps.learning import floor_from_config
    from edtalk.stages.builders import generator_config
    from metrics.disentanglement import collect

    last = job.plan.generator
    gens = {k: g for k, g in stage_generators(job)[0].items() if k != last}
    gens["floor"] = floor_from_config(
        generator_config(job.stage_config(last, job.stage_steps(last))), job.seed
    )
    job.step("learning_probes", f"probe data of {', '.join(gens)} for the learning table")
    train, test = collect(gens, job.shards, "train"), collect(gens, job.shards, "test")
    save_probes(job.out / PROBES_FILE, job.shards, gens, train, test)
    return {}


def save_probes(
    path: Path, shards: Path | None, gens: dict[str, Any], train: dict[str, Any], test: dict[str, Any]
) -> Path:
    """Write the probe data of `gens` with their weights' sha256 and the shards' identity, atomically."""
    import pickle

    from edtalk.apps.parity import state_dict_sha256

    entries = {
        k: {"fingerprint": state_dict_sha256(g.state_dict()), "train": train[k], "test": test[k]}
        for k, g in gens.items()
    }
    payload = {"shards": shards_identity(shards), "entries": entries}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(pickle.dumps(payload))
    os.replace(tmp, path)  # a reader sees the whole file or none
    return path


def cached_probes(job: Any, gens: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(train, test) probe data of those `gens` that `learning_probes` collected with the same weights from
    the same shards ({} when it did not run)."""
    import pickle

    from edtalk.apps.parity import state_dict_sha256

    path = job.out / PROBES_FILE
    if not path.is_file():
        return {}, {}
    payload = pickle.loads(path.read_bytes())
    if payload.get("shards") != shards_identity(job.shards):
        return {}, {}
    entries = payload.get("entries", {})
    same = [
        k
        for k, g in gens.items()
        if k in entries and entries[k]["fingerprint"] == state_dict_sha256(g.state_dict())
    ]
    return {k: entries[k]["train"] for k in same}, {k: entries[k]["test"] for k in same}


def stage_generators(job: Any) -> tuple[dict[str, Any], dict[str, int]]:
    """The generator after each of the generator's stages this run trained, and the cumulative steps at
    its end (`steps["init"]` = 0: the random-init floor)."""
    from edtalk.weights import load_generator

    visual = job.plan.lineage(job.plan.generator)
    gens: dict[str, Any] = {}
    steps, total = {"init": 0}, 0
    for st in job.stages:
        if st.name in visual:
            total += st.steps
            gens[st.name] = load_generator(runs.checkpoint(st.run_dir)).eval()
            steps[st.name] = total
    return gens, steps


def emotion_vectors(job: Any) -> dict[str, Any]:
    """<emotion>.npy: with an anchored expression stage (`model.exp_anchor`) the anchor of each emotion its
    training clips show (no coefficients needed); else the mean expression weights of each emotion from our
    expression generator's coefficients (the shards audio2exp trained on)."""
    import torch

    from edtalk.nn.emotion import EMOTIONS
    from edtalk.stages.expression import emotion_anchors

    dirs = job.run_dirs()
    if "audio2exp" not in dirs:
        return {"emotion_vectors": None}
    anchor = expression_anchor(dirs.get("expression"))
    if anchor > 0:
        names = labelled_emotions(job.shards) if job.shards is not None else []
        dim = int(run_setting(dirs["expression"], "generator.exp_dim"))
        labels = torch.tensor([EMOTIONS.index(n) for n in names], dtype=torch.long)
        rows = emotion_anchors(labels, dim, anchor)  # -> N x dim
        assert rows is not None  # anchor > 0
        vectors = {name: row[None].numpy() for name, row in zip(names, rows)}
    else:
        from edtalk.coefficients import emotion_vectors as mean_weights

        data = runs.coefficient_data(dirs["audio2exp"])
        if "extract" in job.plan.upstream_of("audio2exp"):
            data = runs.extracted_data(dirs["extract"])  # the plan's extract step's shards
        if data is None:
            return {"emotion_vectors": None}
        vectors = {name: entry["weights"] for name, entry in mean_weights(data, ("train",)).items()}
    if not vectors:
        return {"emotion_vectors": None}
    folder = job.out / "emotion_vectors"
    folder.mkdir(parents=True, exist_ok=True)
    for name, weights in vectors.items():
        np.save(folder / f"{name}.npy", np.asarray(weights, np.float32))
    return {"emotion_vectors": folder}


def labelled_emotions(root: Path) -> list[str]:
    """The MEAD emotions the training clips of a shard folder are labelled with, in MEAD order."""
    from datamodules.shards import clip_infos
    from edtalk.nn.emotion import EMOTIONS

    seen = {
        int(info.meta.get("emotion_id", -1)) for infos in clip_infos(root, "train").values() for info in infos
    }
    return [name for i, name in enumerate(EMOTIONS) if i in seen]


def expression_anchor(run_dir: Path | None) -> float:
    """`model.exp_anchor` of an expression run (0: none, or no run)."""
    return float(run_setting(run_dir, "model.exp_anchor") or 0.0)


def run_setting(run_dir: Path | None, key: str) -> Any:
    """A dotted key of a finished run's config (None: no run, or no such key)."""
    from omegaconf import OmegaConf

    if run_dir is None or not runs.config_file(run_dir).is_file():
        return None
    return OmegaConf.select(OmegaConf.load(runs.config_file(run_dir)), key, default=None)


# Fine-tuning steps = this x the visual budget (300 at `quickstart --steps 200`: +4.0 dB over the shared
# generator and +6.2 over copying the source on the held-out speaker's other clips, experiments/demo/README.md).
FINETUNE_SCALE = 1.5


def finetune(job: Any) -> dict[str, Any]:
    """Person-specific fine-tuning on a held-out speaker (`edtalk.apps.finetune_eval`), scored on that
    speaker's other clips before and after; adds `learning["finetune"]`."""
    from edtalk.apps.finetune_eval import finetune_eval

    steps = max(1, round(FINETUNE_SCALE * {**job.plan.budgets, **job.budgets}["visual"]))
    job.step(
        "finetune", f"a copy of the generator on one clip per emotion of a held-out speaker ({steps} steps)"
    )
    generator = job.checkpoints()["generator"]
    result = finetune_eval(
        generator, job.out / "finetune", shards=job.shards, profile=job.profile, steps=steps
    )
    learning = dict(job.results.get("learning") or {})
    learning["finetune"] = result
    job.step(
        "finetune", "done " + ", ".join(f"{k}={v:.3g}" for k, v in result.items() if isinstance(v, float))
    )
    return {"learning": learning}


def fmt_learning(row: dict[str, Any]) -> str:
    keys = ("psnr_video", "psnr_audio", "disentanglement_score", "sync_acc", "emotion_judge_acc")
    return ", ".join(f"{k}={row[k]:.3g}" for k in keys if isinstance(row.get(k), float))
