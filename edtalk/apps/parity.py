"""Numerical parity with the original EDTalk networks (`edtalk check-parity DIR`).

A reference directory (layout of `shared/upstream/parity/`) holds, per network kind, a weight recipe
`recipe_<kind>.json` (a rule per state-dict entry) and `ref_<kind>.pt` (inputs, float64 outputs). We
rebuild the exact weights from the recipe, load them through the official key maps of
`edtalk.weights`, run our modules in float64 and report the max abs difference per output.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

import torch

from edtalk import weights

TOLERANCE = 1e-6
KINDS = ("edtalk_full", "edtalk_lip_pose", "audio2lip")


def build_state_dict(recipe: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
    """Rebuild the state dict of a recipe (`const`, `values` and `normal` rules, see the README)."""
    out: dict[str, torch.Tensor] = {}
    for key, entry in recipe["entries"].items():
        shape = entry["shape"]
        rule = entry["rule"]
        if rule == "const":
            dtype = getattr(torch, entry.get("dtype", "float32"))
            out[key] = torch.full(shape, entry["value"], dtype=dtype)
        elif rule == "values":
            out[key] = torch.tensor(entry["values"], dtype=torch.float32).reshape(shape)
        elif rule == "normal":
            g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")) + seed)
            w = torch.randn(shape, generator=g, dtype=torch.float64) * entry["std"] + entry["mean"]
            out[key] = w.to(torch.float32)
        else:
            raise ValueError(f"unknown recipe rule {rule!r} for {key}")
    return out


def state_dict_sha256(sd: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in sd.values():
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def _f64(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float64)


def _generator_outputs(
    kind: str, sd: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]
) -> dict[str, Any]:
    gen = weights.generator_from_official(sd, kind).double().eval()
    x = {k: _f64(v) for k, v in inputs.items()}
    src = gen.encode(x["img_source"])
    co = {name: gen.coefficients(x[f"img_{name}"]) for name in ("lip", "pose", "exp") if f"img_{name}" in x}
    q = gen.basis()
    out: dict[str, Any] = {
        "wa_source": src.w_a,
        "feat_source_8": src.feats[0],
        "feat_source_16": src.feats[1],
        "alpha_lip": co["lip"]["mouth"],
        "alpha_pose": co["pose"]["pose"],
    }
    mouth_v, mouth_a, pose = co["lip"]["mouth"], x["lip_coeff"], co["pose"]["pose"]
    if kind == "edtalk_lip_pose":
        out["Q_lipnonlip"] = q.to(torch.float32).to(torch.float64)
        calls = {
            "audio": ("img_test_from_audio_pose_image", mouth_a),
            "video": ("img_test_EDTalk_V", mouth_v),
        }
        for name, (img_name, mouth) in calls.items():
            w, _ = gen.latent(src.w_a, {"mouth": mouth, "pose": pose}, q)
            out[f"direction_{name}_f64"] = w - src.w_a
            out[f"img_{name}_f64_direction"] = gen.render(src, w)
            # The original demo evaluates alpha @ Q^T in float32 even in a float64 run.
            a32, q32 = torch.cat([mouth, pose], 1).float(), q.float()
            direction = (a32[:, :, None] * q32.t()[None]).sum(1).double()
            out[f"direction_{name}"] = direction
            out[img_name] = gen.render(src, src.w_a + direction)
        return out
    exp_v, exp_w = co["exp"]["exp"], x["exp_weight"]
    assert gen.banks.expression is not None
    out.update(
        alpha_exp=exp_v,
        Q_all=q,
        Q_lipnonlip=torch.linalg.qr(gen.banks.mouth_pose + 1e-8, mode="reduced")[0],
        Q_exp_only=torch.linalg.qr(gen.banks.expression + 1e-8, mode="reduced")[0],
    )
    w, e = gen.latent(src.w_a, {"mouth": mouth_v, "pose": pose, "exp": exp_v}, q)
    out.update(
        direction=w - src.w_a,
        e_latent=e,
        img_dec_no_eem=gen.render(src, w),
        img_test_EDTalk_V=gen.render(src, w, e),
    )
    full_calls: dict[str, tuple[torch.Tensor, torch.Tensor]] = {
        "img_test_EDTalk_A": (mouth_a, exp_v),
        "img_test_EDTalk_A_use_exp_weight": (mouth_a, exp_w),
        "img_test_EDTalk_V_use_exp_weight": (mouth_v, exp_w),
    }
    for name, (mouth, exp) in full_calls.items():
        out[name] = gen.animate(src, {"mouth": mouth, "pose": pose, "exp": exp}, q)
    return out


def _audio2lip_outputs(sd: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
    from edtalk.mel import mel_windows, smooth_coefficients

    model = weights.audio2lip_from_official(sd).double().eval()
    windows, rows, mel = mel_windows(inputs["wav"].numpy(), return_details=True)
    wav_windows = _f64(torch.from_numpy(windows))
    lip = model(_f64(inputs["mel_windows"]))
    wav_lip = model(wav_windows)
    return {
        "lip_coeff": lip,
        "lip_coeff_smoothed": smooth_coefficients(lip),
        "wav_mel": torch.from_numpy(mel).to(torch.float64),
        "wav_windows": wav_windows,
        "wav_window_rows": torch.from_numpy(rows),
        "wav_lip_coeff": wav_lip,
        "wav_lip_coeff_smoothed": smooth_coefficients(wav_lip),
    }


def rebuilt_weights(recipe: dict[str, Any], meta: dict[str, Any], kind: str) -> dict[str, torch.Tensor]:
    """The recipe's weights at the reference's own seed, checked against the hash it recorded.

    The reference's `meta["weights_sha256"]` is the check for any seed; a reference without one
    falls back to the recipe's `weights_sha256_seed0` when its seed is 0 (nothing to check otherwise).

    Raises:
        ValueError: the rebuilt weights differ from the recorded hash (naming kind, seed and both hashes).
    """
    seed = int(meta.get("seed", 0))
    sd = build_state_dict(recipe, seed=seed)
    expected = meta.get("weights_sha256") or (recipe.get("weights_sha256_seed0") if seed == 0 else None)
    got = state_dict_sha256(sd) if expected else ""
    if expected and got != expected:
        raise ValueError(
            f"rebuilt weights of {kind} (seed {seed}) have sha256 {got}, but ref_{kind}.pt records {expected}: "
            f"recipe_{kind}.json and ref_{kind}.pt do not belong together"
        )
    return sd


def run_kind(directory: Path, kind: str) -> dict[str, float]:
    """Max abs difference per stored output of `ref_<kind>.pt`."""
    recipe = json.loads((directory / f"recipe_{kind}.json").read_text())
    ref = weights.load_file(directory / f"ref_{kind}.pt")
    sd = rebuilt_weights(recipe, ref["meta"], kind)
    with torch.no_grad():
        if kind == "audio2lip":
            ours = _audio2lip_outputs(sd, ref["inputs"])
        else:
            ours = _generator_outputs(kind, sd, ref["inputs"])
    diffs: dict[str, float] = {}
    for name, expected in ref["outputs"].items():
        if name not in ours:
            diffs[name] = float("nan")
            continue
        got = ours[name]
        if got.shape != expected.shape:
            raise ValueError(f"{kind}/{name}: shape {tuple(got.shape)} != reference {tuple(expected.shape)}")
        diffs[name] = float((got.to(torch.float64) - expected.to(torch.float64)).abs().max())
    return diffs


def check_directory(
    directory: Path, tolerance: float = TOLERANCE
) -> tuple[bool, list[tuple[str, str, float]]]:
    """Run every kind present in `directory`; returns (all within tolerance, rows of kind/output/diff)."""
    rows: list[tuple[str, str, float]] = []
    kinds = [k for k in KINDS if (directory / f"ref_{k}.pt").exists()]
    if not kinds:
        raise FileNotFoundError(f"no ref_<kind>.pt files for kinds {KINDS} in {directory}")
    for kind in kinds:
        rows.extend((kind, name, d) for name, d in run_kind(directory, kind).items())
    ok = all(d <= tolerance for _, _, d in rows)
    return ok, rows
