"""The short Markdown summary of a GPU check's result.json (one table per section)."""

from __future__ import annotations

from typing import Any


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, bool):
            return "yes" if v else "no"
        return str(v)

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]


def _status(name: str, sec: dict[str, Any]) -> list[str]:
    line = f"## {name}: {sec.get('status', '?')}"
    if "elapsed_s" in sec:
        line += f" ({sec['elapsed_s']} s of {sec.get('budget_s')} s)"
    out = [line, ""]
    if sec.get("error"):
        out += [f"error: `{sec['error']}`", ""]
    dev = sec.get("device")
    if isinstance(dev, dict):
        out += [f"device: {dev.get('device')}", ""]
    return out


def tests_md(sec: dict[str, Any]) -> list[str]:
    out = [f"passed {sec.get('passed', 0)}, failed {sec.get('failed', 0)}, errors {sec.get('errors', 0)}, "]
    out[0] += f"skipped {sec.get('skipped', 0)}"
    bad = [c for c in sec.get("cases", []) if c["outcome"] in ("failed", "error")]
    return out + [""] + [f"- {c['outcome']}: `{c['name']}`: {c['message'][:200]}" for c in bad]


def train_md(sec: dict[str, Any]) -> list[str]:
    header = [
        "stage",
        "precision",
        "channels-last",
        "batch",
        "s/step",
        "images/s",
        "peak GiB",
        "max batch",
        "why",
    ]
    rows = [
        [
            r.get("stage"),
            r.get("precision"),
            r.get("channels_last"),
            r.get("batch"),
            r.get("s_per_step"),
            r.get("images_per_s"),
            r.get("peak_mem_gib"),
            r.get("max_batch"),
            r.get("max_batch_end") or r.get("skipped") or (r.get("error") or "")[:60],
        ]
        for r in sec.get("rows", [])
    ]
    return _table(header, rows)


def inference_md(sec: dict[str, Any]) -> list[str]:
    goal = sec.get("goal", {})
    header = [
        "precision",
        "per-frame fps",
        "batched fps (best chunk)",
        "ratio",
        "goal fps",
        "goal ratio",
        "note",
    ]
    rows = [
        [
            r.get("precision"),
            r.get("per_frame_fps"),
            r.get("batched_fps"),
            r.get("ratio"),
            f"≥ {goal.get('batched_fps')}: {'met' if r.get('goal_fps_met') else 'not met'}",
            f"≥ {goal.get('ratio')}x: {'met' if r.get('goal_ratio_met') else 'not met'}",
            r.get("skipped") or (r.get("error") or "")[:60],
        ]
        for r in sec.get("rows", [])
    ]
    chunks = [f"{k}: {v}" for r in sec.get("rows", []) for k, v in r.items() if k.startswith("batched_fps_")]
    live = [
        [r.get("precision"), r.get("first_frame_latency_s"), r.get("rtf"), r.get("frames"), r.get("dropped"),
         r.get("skipped") or (r.get("error") or "")[:60]]
        for r in sec.get("stream_rows", [])
    ]  # fmt: skip
    stream = ["", "`edtalk stream` (speech paced at real time):", ""] if live else []
    stream += _table(["precision", "first frame s", "rtf", "frames", "dropped", "note"], live) if live else []
    return _table(header, rows) + (["", ", ".join(chunks)] if chunks else []) + stream


def evaluation_md(sec: dict[str, Any]) -> list[str]:
    plan = sec.get("plan", {})
    rows = [
        [
            sec.get("s_per_clip"),
            plan.get("frames"),
            sec.get("summary_s"),
            sec.get("cpu_s_per_clip"),
            sec.get("speedup_vs_cpu"),
            ", ".join(sec.get("metrics", [])),
        ]
    ]
    out = _table(
        [
            "s/clip (GPU judges)",
            "frames/clip",
            "summary s (once per split)",
            "s/clip (CPU)",
            "speed-up",
            "metrics",
        ],
        rows,
    )
    return out + [f"\nskipped: {k}: {v}" for k, v in sec.get("skipped", {}).items()]


def markdown(result: dict[str, Any]) -> str:
    meta = result.get("meta", {})
    lines = [
        f"# GPU check {'(dry run, CPU) ' if meta.get('dry_run') else ''}{meta.get('date', '')}",
        "",
        f"torch {meta.get('torch')} (CUDA {meta.get('cuda_build')}), lightning {meta.get('lightning')}, "
        f"python {meta.get('python')}, {meta.get('elapsed_s')} s of {meta.get('budget_s')} s",
        "",
    ]
    for name, fn in (("tests", tests_md), ("train", train_md), ("inference", inference_md)):
        sec = result.get(name, {})
        lines += _status(name, sec) + fn(sec) + [""]
    sec = result.get("evaluation", {})
    lines += _status("evaluation", sec) + evaluation_md(sec) + [""]
    return "\n".join(lines)
