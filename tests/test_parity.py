"""Numerical parity with the original EDTalk networks on the shared reference set (float64, <= 1e-6)."""

from __future__ import annotations

import json

import pytest
import torch

from edtalk.cli import main
from edtalk.parity import build_state_dict, state_dict_sha256
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
