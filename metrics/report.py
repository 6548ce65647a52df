"""Writing an evaluation: metrics.json, table.md, the paper table (markdown + LaTeX), per_clip.csv, plots."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metrics.table import LABELS, METRICS, PAPER_COLUMNS


@dataclass
class Report:
    """Results of `evaluate`: summary per method, per-clip rows, matching problems, skipped metrics."""

    summary: dict[str, dict[str, float]]
    rows: dict[str, list[dict[str, Any]]]
    missing: dict[str, list[str]]
    extra: dict[str, list[str]]
    skipped: dict[str, str]
    extras: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, dict[str, str]] = field(default_factory=dict)  # method -> {clip: why not scored}
    caption: dict[str, Any] = field(default_factory=dict)  # protocol, judge files (sha256), clip count


def markdown_table(summary: dict[str, dict[str, float]]) -> str:
    """Methods x metrics, with ↑ / ↓ after each metric name."""
    names = [m for m in METRICS if any(m in s for s in summary.values())]
    labels = {m: LABELS.get(m, m) if "emotion_fan_acc" in names else m for m in names}
    head = "| method | " + " | ".join(f"{labels[m]} {'↑' if METRICS[m][0] else '↓'}" for m in names) + " |"
    lines = [head, "|" + "---|" * (len(names) + 1)]
    for method, values in summary.items():
        cells = [f"{values[m]:.4f}" if m in values and not math.isnan(values[m]) else "–" for m in names]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _paper_cells(
    summary: dict[str, dict[str, float]],
) -> tuple[list[tuple[str, bool]], dict[str, list[str | None]]]:
    """The paper's columns that have a value for some method: [(header, higher is better)], and per
    method the metric filling each column (None: no value)."""
    cols: list[tuple[str, bool]] = []
    which: dict[str, list[str | None]] = {m: [] for m in summary}
    for header, names in PAPER_COLUMNS:
        picked = {m: next((n for n in names if _finite(s.get(n))), None) for m, s in summary.items()}
        if not any(picked.values()):
            continue
        first = next(n for n in picked.values() if n)
        cols.append((header, METRICS[first][0]))
        for m, n in picked.items():
            which[m].append(n)
    return cols, which


def _finite(x: float | None) -> bool:
    return x is not None and not math.isnan(x)


def _best(
    summary: dict[str, dict[str, float]], which: dict[str, list[str | None]], col: int, hib: bool
) -> float | None:
    vals = [summary[m][n] for m, ns in which.items() if (n := ns[col]) is not None]
    if len(vals) < 2:
        return None
    return max(vals) if hib else min(vals)


def _fmt(metric: str, value: float) -> str:
    if metric in ("psnr", "fid", "lse_c", "lse_d") or metric.endswith("_acc"):
        return f"{value:.2f}"
    return f"{value:.3f}" if metric in ("m_lmd", "f_lmd") else f"{value:.4f}"


def caption_text(caption: dict[str, Any]) -> str:
    """One line: protocol, clip count, and each judge file's name and sha256 (12 hex digits)."""
    judges = ", ".join(
        f"{k} {Path(p).name} sha256:{h[:12]}" for k, (p, h) in sorted(caption.get("judges", {}).items())
    )
    parts = [f"protocol {caption.get('protocol', 'ours')}", f"{caption.get('clips', '?')} clips"]
    parts.append(f"judges: {judges}" if judges else "judges: none")
    return "; ".join(parts)


def paper_table(summary: dict[str, dict[str, float]], caption: dict[str, Any]) -> tuple[str, str]:
    """(markdown, LaTeX) in the papers' column order (PSNR, SSIM, FID, M-LMD, F-LMD, LSE-C, LSE-D,
    Acc_emo) with ↑/↓, the best value of each column in bold, the protocol/judges/clip count as caption."""
    cols, which = _paper_cells(summary)
    arrow = {True: ("↑", r"$\uparrow$"), False: ("↓", r"$\downarrow$")}
    md = [
        "| Method | " + " | ".join(f"{h} {arrow[hib][0]}" for h, hib in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    tex_rows = []
    bests = [_best(summary, which, i, hib) for i, (_, hib) in enumerate(cols)]
    for method, values in summary.items():
        cells_md, cells_tex = [], []
        for i, name in enumerate(which[method]):
            if name is None:
                cells_md.append("–")
                cells_tex.append("--")
                continue
            text = _fmt(name, values[name])
            bold = bests[i] is not None and values[name] == bests[i]
            cells_md.append(f"**{text}**" if bold else text)
            cells_tex.append(rf"\textbf{{{text}}}" if bold else text)
        md.append(f"| {method} | " + " | ".join(cells_md) + " |")
        tex_rows.append(_tex_escape(method) + " & " + " & ".join(cells_tex) + r" \\")
    cap = caption_text(caption)
    md_text = "\n".join(md) + f"\n\n{cap}\n"
    head = " & ".join(["Method"] + [f"{_tex_escape(h)} {arrow[hib][1]}" for h, hib in cols]) + r" \\"
    tex = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_tex_escape(cap)}}}",
        r"\begin{tabular}{l" + "c" * len(cols) + "}",
        r"\toprule",
        head,
        r"\midrule",
        *tex_rows,
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return md_text, "\n".join(tex) + "\n"


def _tex_escape(text: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("%", r"\%"),
        ("&", r"\&"),
        ("#", r"\#"),
        ("$", r"\$"),
    ):
        text = text.replace(a, b)
    return text


def write_report(report: Report, out: str | Path) -> dict[str, Path]:
    """metrics.json, table.md, paper_table.md / .tex, per_clip.csv and plots/<metric>.png under `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(report.summary)
    notes = [f"- {m}: skipped — {why}" for m, why in report.skipped.items()]
    notes += [
        f"- {n}: {len(ids)} ground-truth clips have no result video"
        for n, ids in report.missing.items()
        if ids
    ]
    notes += [
        f"- {n}: {len(ids)} videos match no ground-truth clip" for n, ids in report.extra.items() if ids
    ]
    notes += [
        f"- {n}: {len(bad)} result videos could not be scored (per_clip.csv / metrics.json 'failed' say why)"
        for n, bad in report.failed.items()
        if bad
    ]
    (out / "table.md").write_text(table + ("\n\n" + "\n".join(notes) if notes else "") + "\n")
    payload = {
        "metrics": report.summary,
        "higher_is_better": {m: hib for m, (hib, _) in METRICS.items()},
        "skipped": report.skipped,
        "missing": report.missing,
        "extra": report.extra,
        **({"failed": report.failed} if any(report.failed.values()) else {}),
        **({"caption": report.caption} if report.caption else {}),
        **report.extras,
    }
    (out / "metrics.json").write_text(json.dumps(payload, indent=2, default=_jsonable))
    failed_rows = {
        m: [{"clip_id": c, "error": why} for c, why in bad.items()] for m, bad in report.failed.items()
    }
    _write_csv({m: rows + failed_rows.get(m, []) for m, rows in report.rows.items()}, out / "per_clip.csv")
    md, tex = paper_table(report.summary, report.caption)
    (out / "paper_table.md").write_text(md)
    (out / "paper_table.tex").write_text(tex)
    plots = _bar_charts(report.summary, out / "plots")
    files = {"json": out / "metrics.json", "table": out / "table.md", "csv": out / "per_clip.csv"}
    return {**files, "paper_md": out / "paper_table.md", "paper_tex": out / "paper_table.tex", **plots}


def _jsonable(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, np.generic | np.ndarray):
        return x.tolist()
    raise TypeError(f"cannot write {type(x).__name__} to metrics.json")


def _write_csv(rows: dict[str, list[dict[str, Any]]], path: Path) -> None:
    flat = [{"method": m, **r} for m, rs in rows.items() for r in rs]
    keys = list(dict.fromkeys(k for r in flat for k in r))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys or ["method"])
        writer.writeheader()
        writer.writerows(flat)


def _bar_charts(summary: dict[str, dict[str, float]], folder: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for metric, (hib, _) in METRICS.items():
        vals = {m: s[metric] for m, s in summary.items() if metric in s and not math.isnan(s[metric])}
        if not vals:
            continue
        fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(vals), 3))
        ax.bar(list(vals), list(vals.values()), color="tab:blue")
        ax.set_title(f"{metric} ({'higher' if hib else 'lower'} is better)")
        fig.tight_layout()
        path = folder / f"{metric}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        out[f"plot_{metric}"] = path
    return out


def heatmap(
    matrix: torch.Tensor | np.ndarray, title: str, path: Path, labels: list[str] | None = None
) -> Path:
    """Save a square heatmap (Gram / correlation matrices)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    arr = matrix.detach().cpu().numpy() if isinstance(matrix, torch.Tensor) else np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(5, 4.2))
    im = ax.imshow(arr, cmap="RdBu_r", vmin=-1, vmax=1)
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    if labels:
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
