"""Judge weight files with random values, saved to temp files (the real files cannot ship)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def inception_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight FID InceptionV3 state dict in torch-fidelity's layout."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    path = tmp_path_factory.mktemp("inception") / "inception-random.pth"
    with pytest.MonkeyPatch.context() as mp:  # build the architecture without its download
        mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        torch.manual_seed(3)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["64"])
    torch.save(net.state_dict(), path)
    return path
