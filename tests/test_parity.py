"""Numerical parity with the original EDTalk networks on the shared reference set (float64, <= 1e-6)."""

from __future__ import annotations

import json

import pytest
import torch

from edtalk.apps.parity import build_state_dict, state_dict_sha256
from edtalk.cli import main
from tests.conftest import shared_dir

PARITY = shared_dir() / "upstream" / "parity"
needs_refs = pytest.mark.skipif(not PARITY.is_dir(), reason=f"parity references not found at {PARITY}")


@needs_refs
def test_recipe_rebuilds_the_documented_weights() -> None:
    recipe = json.loads((PARITY / "recipe_edtalk_lip_pose.json").read_text())
    sd = build_state_dict(recipe)
    assert state_dict_sha256(sd) == recipe["weights_sha256_seed0"]
    first = sd["enc.net_app.convs.0.0.weight"].flatten()[:3]
    assert torch.allclose(first, torch.tensor([-0.35683504, 0.53236800, 0.08262856]), atol=1e-7)


@needs_refs
def test_check_parity_on_shared_references(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["check-parity", str(PARITY)])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "max_abs_diff=" in line]
    print(out)
    # Every stored output of every kind is compared: 16 full-model, 14 lip-pose, 7 Audio2Lip outputs.
    assert len(rows) == 16 + 14 + 7
    assert status == 0, out
    assert all(line.endswith(" ok") for line in rows)


def test_check_parity_fails_on_a_perturbed_reference(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command exits non-zero when an output moves by more than the tolerance."""
    if not PARITY.is_dir():
        pytest.skip(f"parity references not found at {PARITY}")
    (tmp_path / "recipe_edtalk_lip_pose.json").write_bytes(
        (PARITY / "recipe_edtalk_lip_pose.json").read_bytes()
    )
    ref = torch.load(PARITY / "ref_edtalk_lip_pose.pt", weights_only=True)
    ref["outputs"]["alpha_pose"] = ref["outputs"]["alpha_pose"] + 1e-5
    torch.save(ref, tmp_path / "ref_edtalk_lip_pose.pt")
    assert main(["check-parity", str(tmp_path)]) == 1
    assert "alpha_pose" in capsys.readouterr().out


def _reference_set(tmp_path, seed: int, outputs_seed: int | None = None, sha: str | None = None):
    """An Audio2Lip reference set built with weight `seed` (outputs from `outputs_seed`' weights)."""
    from edtalk.apps.parity import _audio2lip_outputs

    recipe = json.loads((PARITY / "recipe_audio2lip.json").read_text())
    ref = torch.load(PARITY / "ref_audio2lip.pt", weights_only=True)
    sd = build_state_dict(recipe, seed=seed)
    src = sd if outputs_seed is None else build_state_dict(recipe, seed=outputs_seed)
    with torch.no_grad():
        outputs = _audio2lip_outputs(src, ref["inputs"])
    meta = dict(ref["meta"], seed=seed, weights_sha256=sha or state_dict_sha256(sd))
    out = tmp_path / f"seed{seed}"
    out.mkdir()
    (out / "recipe_audio2lip.json").write_text(json.dumps(recipe))
    torch.save({**ref, "outputs": outputs, "meta": meta}, out / "ref_audio2lip.pt")
    return out, outputs


@needs_refs
def test_check_parity_accepts_a_reference_built_with_another_seed(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = json.loads((PARITY / "recipe_audio2lip.json").read_text())
    seed7 = build_state_dict(recipe, seed=7)
    assert state_dict_sha256(seed7) != recipe["weights_sha256_seed0"]
    ref0 = torch.load(PARITY / "ref_audio2lip.pt", weights_only=True)
    directory, outputs = _reference_set(tmp_path, seed=7)
    # the seed-7 weights really give other outputs than the seed-0 reference
    assert (outputs["lip_coeff"] - ref0["outputs"]["lip_coeff"]).abs().max() > 1e-3
    assert main(["check-parity", str(directory)]) == 0, capsys.readouterr().out
    assert "all within" in capsys.readouterr().out


@needs_refs
def test_check_parity_uses_the_reference_seed_and_hash(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """Outputs of seed-0 weights under a seed-7 reference differ (the seed is used, not 0); a reference whose
    recorded hash is not the rebuilt one is one clear error (exit 2) naming both hashes."""
    directory, _ = _reference_set(tmp_path, seed=7, outputs_seed=0)
    assert main(["check-parity", str(directory)]) == 1
    assert "NOT within" in capsys.readouterr().out
    bad, _ = _reference_set(tmp_path, seed=3, sha="0" * 64)
    assert main(["check-parity", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "0" * 64 in err and "seed 3" in err
