"""StyleGAN2 discriminator: official layout at 256², tiny configs at 64², minibatch stddev."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edtalk import weights
from edtalk.nn.discriminator import Discriminator, minibatch_stddev
from tests.conftest import manifest


def tiny() -> Discriminator:
    return Discriminator(64, channel_multiplier=0.125, max_channels=16)


def test_layout_equals_the_manifest_without_fir_kernels() -> None:
    expected = manifest("discriminator")
    ours = {k: list(v.shape) for k, v in Discriminator().state_dict().items()}
    assert ours == {k: s for k, s in expected["state_dict"].items() if not k.endswith(".kernel")}
    assert sum(p.numel() for p in Discriminator().parameters()) == expected["num_params"]
    assert {
        k: list(v.shape) for k, v in weights.export_official(Discriminator(), "discriminator").items()
    } == (expected["state_dict"])


def test_trainer_checkpoint_dis_loads(tmp_path: Path) -> None:
    sd = weights.export_official(Discriminator(), "discriminator")
    path = tmp_path / "EDTalk_lip_pose.pt"
    torch.save({"dis": sd, "d_optim": {}}, path)
    model = weights.load_official(path, "discriminator")
    assert torch.equal(model.final_linear[0].weight, sd["final_linear.0.weight"])


@pytest.mark.parametrize("batch", [1, 4, 6])
def test_tiny_forward_and_backward(batch: int) -> None:
    d = tiny()
    x = (torch.rand(batch, 3, 64, 64) * 2 - 1).requires_grad_()
    out = d(x)
    assert out.shape == (batch, 1) and torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="B x 3 x 64 x 64"):
        d(torch.zeros(1, 3, 32, 32))


def test_minibatch_stddev_groups_of_four() -> None:
    x = torch.randn(8, 6, 4, 4)
    out = minibatch_stddev(x, 4, 1)
    assert out.shape == (8, 7, 4, 4)
    assert torch.equal(out[:, :6], x)
    # samples j, j+2, j+4, j+6 form a group (upstream's view(group, -1, ...) layout)
    group = x[[1, 3, 5, 7]]
    expected = torch.sqrt(group.var(0, unbiased=False) + 1e-8).mean()
    assert torch.allclose(out[[1, 3, 5, 7], 6], expected.expand(4, 4, 4), atol=1e-6)
    assert not torch.allclose(out[0, 6], out[1, 6])
    assert minibatch_stddev(torch.randn(6, 2, 4, 4)).shape == (6, 3, 4, 4)  # group 3 when 4 does not divide


def test_invalid_size() -> None:
    with pytest.raises(ValueError, match="power of two"):
        Discriminator(96)
