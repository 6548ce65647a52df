"""Audio2Lip (SPEC 4.2): official layout, shapes, and numerical parity with the original (float64)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edtalk import weights
from edtalk.apps.parity import run_kind
from edtalk.nn.audio2lip import Audio2Lip
from tests.conftest import manifest, shared_dir

PARITY = shared_dir() / "upstream" / "parity"


@pytest.mark.skipif(
    not (PARITY / "ref_audio2lip.pt").is_file(), reason=f"parity references not found at {PARITY}"
)
def test_parity_with_the_original_audio2lip() -> None:
    """Every output (coefficients, smoothed coefficients, mel, windows, rows) within 1e-6, and 1e-4 relative."""
    diffs = run_kind(PARITY, "audio2lip")
    assert set(diffs) == {
        "lip_coeff",
        "lip_coeff_smoothed",
        "wav_mel",
        "wav_windows",
        "wav_window_rows",
        "wav_lip_coeff",
        "wav_lip_coeff_smoothed",
    }
    assert all(d <= 1e-6 for d in diffs.values()), diffs
    ref = torch.load(PARITY / "ref_audio2lip.pt", weights_only=True)["outputs"]
    for name in ("lip_coeff", "wav_lip_coeff"):
        assert diffs[name] <= 1e-4 * float(ref[name].abs().max()), name


def test_state_dict_layout_equals_the_manifest() -> None:
    expected = manifest("audio2lip")["state_dict"]
    sd = Audio2Lip().state_dict()
    assert {k: list(v.shape) for k, v in sd.items()} == expected
    assert sum(p.numel() for p in Audio2Lip().parameters()) == manifest("audio2lip")["num_params"]


def test_official_file_loads_strictly(tmp_path: Path) -> None:
    sd = {
        k: torch.randn(shape) if shape else torch.tensor(3)
        for k, shape in manifest("audio2lip")["state_dict"].items()
    }
    sd = {k: v.abs() + 0.5 if "running_var" in k else v for k, v in sd.items()}
    path = tmp_path / "Audio2Lip.pt"
    torch.save({"audio2lip": sd, "args": None}, path)
    model = weights.load_official(path, "audio2lip")
    assert isinstance(model, Audio2Lip) and not model.training
    assert torch.equal(model.mapping.weight, sd["mapping.weight"])


def test_windows_of_a_clip_run_as_one_batch() -> None:
    model = Audio2Lip().eval()
    mel = torch.rand(2, 5, 1, 80, 16) * 8 - 4
    with torch.no_grad():
        seq = model(mel)
        flat = model(mel.reshape(10, 1, 80, 16))
    assert seq.shape == (2, 5, 20) and flat.shape == (10, 20)
    assert torch.allclose(seq.reshape(10, 20), flat, atol=1e-6)
    with pytest.raises(ValueError, match=r"mel windows.*mel_windows"):
        model(torch.zeros(2, 80, 16))
