"""The main job's report: `report.md`, `summary.json` and the plots, from a plan run's results and run logs.

Sections, in order: the learning table ("Did it learn?", with the probe tables and the learning curve),
"Training" (each stage's steps, seconds and last logged metrics, and a loss plot), "Evaluation" and
"Videos". Stage logs are read through `edtalk.runs`; `summary.json` keys are an interface.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from edtalk import io, runs
from edtalk.apps.runner import fmt_metrics


def report(job: Any) -> dict[str, Any]:
    """Write OUT/report.md (+ losses.png, learning_curve.png, summary.json); returns {"report": path}."""
    res = job.results
    lines = ["# edtalk quickstart report", ""]
    total = time.perf_counter() - job.started
    lines.append(
        f"Built-in data, 64² networks (profile `{job.profile}`), CPU. Total time {total / 60:.1f} min."
    )
    if res.get("learning"):
        lines += ["", *learning_lines(res["learning"])]
        lines.append("![probe tables](plots/disentanglement_probes.png)")
        curve = _curve_plot(job, job.out / "learning_curve.png")
        if curve:
            lines += ["", f"![learning curve]({curve.name})"]
    if job.stages:
        lines += [
            "",
            "## Training",
            "",
            "| stage | steps | seconds | last logged metrics |",
            "|---|---|---|---|",
        ]
        for st in job.stages:
            lines.append(f"| {st.name} | {st.steps} | {st.seconds:.0f} | {fmt_metrics(st.metrics, 6)} |")
        plot = _loss_plot(job.stages, job.out / "losses.png")
        if plot:
            lines += ["", f"![training losses]({plot.name})"]
    if (res.get("learning") or {}).get("finetune"):
        lines += _finetune_lines(res["learning"]["finetune"], job.out)
    if res.get("emotion_renders"):
        lines += _emotion_lines(res["emotion_renders"], res.get("learning", {}), job.out)
    if res.get("evaluation"):
        lines += _evaluation_lines(res["evaluation"], job.out)
    lines += _video_lines(job)
    path = job.out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    (job.out / "summary.json").write_text(json.dumps(summary(job, total), indent=1))
    return {"report": path}


def cpu_capability() -> str:
    """torch's CPU kernel level here (e.g. "AVX512", "AVX2"): a seed's run is bit-reproducible only at the
    same level and thread count (experiments/demo/README.md, "The audio paths")."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def summary(job: Any, total: float) -> dict[str, Any]:
    """The summary.json object (keys are an interface)."""
    res = job.results
    return {
        "seconds": total,
        "profile": job.profile,
        "threads": job.threads,
        "cpu_capability": cpu_capability(),  # the kernels torch picked: runs differ in float rounding across them
        "stages": {s.name: {"steps": s.steps, "seconds": s.seconds, **s.metrics} for s in job.stages},
        "evaluation": res.get("evaluation", {}).get("summary", {}),
        "learning": res.get("learning", {}),
        "learning_curve": res.get("learning_curve", []),
        "videos": {k: str(v) for k, v in res.get("videos", {}).items()},
        "strips": {k: str(v) for k, v in res.get("strips", {}).items()},
        "emotion_renders": [
            {k: str(v) for k, v in row.items()} for row in res.get("emotion_renders", {}).get("rows", [])
        ],
    }


def _cell(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def learning_lines(learning: dict[str, Any]) -> list[str]:
    """The learning table: each target, ours vs the random-init floor, and the full probe tables."""
    from edtalk.apps.learning import target_checks

    ours, floor = target_checks(learning), target_checks(learning.get("floor", {}))
    lines = [
        "## Did it learn? (held-out speakers)",
        "",
        "| measure | ours | random-init floor | target | met |",
        "|---|---|---|---|---|",
    ]
    for key, (value, op, threshold, ok) in ours.items():
        met = "n/a" if ok is None else ("yes" if ok else "**no**")
        lines.append(f"| {key} | {_cell(value)} | {_cell(floor[key][0])} | {op} {threshold:g} | {met} |")
    lines += ["", "Out-of-sample R² of each coefficient group (rows) for each factor (columns); emotion: "
              "linear-probe accuracy (chance 0.25). Probes are fitted on the training speakers "
              "(metrics/DISENTANGLEMENT.md).", ""]  # fmt: skip
    for name, row in (("ours", learning), ("floor", learning.get("floor", {}))):
        r2, acc = row.get("r2") or {}, row.get("emotion_probe_acc") or {}
        factors = list(next(iter(r2.values()), {}))
        lines += [f"| {name} | {' | '.join(factors)} | emotion acc |", "|---" * (len(factors) + 2) + "|"]
        lines += [
            f"| {g} | {' | '.join(_cell(v) for v in per.values())} | {_cell(acc.get(g))} |"
            for g, per in r2.items()
        ]
        lines.append("")
    return lines


def _finetune_lines(ft: dict[str, Any], out: Path) -> list[str]:
    """Person-specific fine-tuning (edtalk.apps.finetune_eval): before | after beside the copy-source floor."""
    rows = [("PSNR (dB)", "psnr"), ("M-LMD (px)", "m_lmd"), ("CSIM", "csim")]
    lines = ["", "## One person: fine-tuning on a held-out speaker", "",
             "Video-driven reconstruction of that speaker's other clips; copying the source frame scores "
             f"PSNR {_cell(ft.get('psnr_copy_source'))}; the other held-out and training speakers change by "
             f"{_cell(ft.get('other_speakers_psnr_delta'))} dB.", "",
             "| measure | before | after |", "|---|---|---|"]  # fmt: skip
    lines += [
        f"| {name} | {_cell(ft.get(f'{k}_before'))} | {_cell(ft.get(f'{k}_after'))} |" for name, k in rows
    ]
    strip = out / "finetune" / "finetune_strip.png"
    if strip.is_file():
        lines += ["", f"![before | after | ground truth]({strip.relative_to(out)})"]
    return lines


def _emotion_lines(renders: dict[str, Any], learning: dict[str, Any], out: Path) -> list[str]:
    """The Acc_emo section (edtalk.apps.emotion_renders): accuracies, the grid and each render's reading."""
    floor = learning.get("floor", {})
    lines = [
        "",
        "## Do the videos show the emotion? (held-out speakers)",
        "",
        f"acc_emo_generated {_cell(learning.get('acc_emo_generated'))}, acc_emo_audio "
        f"{_cell(learning.get('acc_emo_audio'))} (the judge on the unedited source: "
        f"{_cell(floor.get('acc_emo_generated'))}; chance 0.25; emotion strength "
        f"{renders['rows'][0].get('strength', 1.0):g}). Grid: rows emotions (in the order below), columns "
        "path x speaker; green border: the judge read the intended emotion.",
        "",
        f"![emotion grid]({Path(renders['grid']).relative_to(out)})",
        "",
        "| speaker | emotion | path | judge |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['speaker']} | {r['emotion']} | {r['path']} | {r['predicted']} |" for r in renders["rows"]
    ]
    return lines


def _evaluation_lines(evaluation: dict[str, Any], out: Path) -> list[str]:
    table = Path(evaluation["table"]).read_text()
    lines = ["", "## Evaluation (built-in test split)", "", table]
    lines += [
        "",
        "`edtalk_video`: video-driven self-reconstruction (first frame = source, every frame drives); "
        "`edtalk_audio`: mouth from the clip's audio through the trained audio2mouth, pose and "
        "expression from the ground-truth frames.",
    ]
    for plot in evaluation["plots"]:
        lines.append(f"\n![{plot.stem}]({plot.relative_to(out)})")
    return lines


def _video_lines(job: Any) -> list[str]:
    source = (
        "our generator (emotion_vectors/)" if job.results.get("emotion_vectors") else "the official release"
    )
    lines = ["", "## Videos", "", f"Emotion vectors: from {source}.", ""]
    lines += ["| mode | file | frames |", "|---|---|---|"]
    for name, path in job.results.get("videos", {}).items():
        info = io.probe_video(path)
        lines.append(f"| {name} | [{path.name}]({path.relative_to(job.out)}) | {info.num_frames} |")
    for name, strip in job.results.get("strips", {}).items():
        lines += ["", f"**{name}**", "", f"![{name}]({strip.relative_to(job.out)})"]
    return lines


def _loss_plot(stages: list[Any], path: Path) -> Path | None:
    """Each stage's training loss against its step, one panel per stage."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, (len(stages) + 1) // 2, figsize=(3.2 * ((len(stages) + 1) // 2), 5.5))
    drawn = False
    for ax, st in zip(np.ravel(axes), stages, strict=False):
        for key, pts in runs.train_series(st.run_dir).items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=key, lw=1)
            drawn = True
        ax.set_title(st.name, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    if drawn:
        fig.savefig(path, dpi=90)
    plt.close(fig)
    return path if drawn else None


def _curve_plot(job: Any, path: Path) -> Path | None:
    """Disentanglement score after each generator stage and the stages' val PSNR, against cumulative steps."""
    import matplotlib.pyplot as plt

    curve = job.results.get("learning_curve") or []
    if not curve:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    a1.plot([c["step"] for c in curve], [c["score"] for c in curve], "o-")
    for c in curve:
        a1.annotate(c["stage"], (c["step"], c["score"]), fontsize=7)
    a1.set(xlabel="step (cumulative over stages)", ylabel="disentanglement score", title="score")
    visual, offset = job.plan.lineage(job.plan.generator), 0
    for st in job.stages:
        if st.name not in visual:
            continue
        pts = runs.series(st.run_dir, "val/psnr")
        if pts:
            a2.plot([offset + p[0] for p in pts], [p[1] for p in pts], "o-", label=st.name, ms=3)
        offset += st.steps
    a2.set(xlabel="step (cumulative over stages)", ylabel="val PSNR (dB)", title="PSNR (test speaker)")
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
