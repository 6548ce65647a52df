"""`model.flow_init_gain` (Synthesis.scale_flow_init): gain 0 starts every level at the identity warp.

LIA's init predicts flow offsets of ~0.7 (a third of the image) at every level, so a fresh model samples
scrambled source features; the CPU demo profile starts from the identity warp instead (experiments/demo/).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edtalk.config import GeneratorConfig
from edtalk.nn.generator import Generator
from edtalk.nn.synthesis import ToFlow, sampling_grid


def _flow_offsets(
    gen: Generator, image: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per level (warped, feat, |tanh flow offset|) of video-driven self-reconstruction of `image`."""
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def hook(mod: torch.nn.Module, args: tuple[torch.Tensor, ...], out: tuple[torch.Tensor, ...]) -> None:
        seen.append((out[0], args[2], torch.tanh(out[2][:, :2]).abs()))

    handles = [m.register_forward_hook(hook) for m in gen.synthesis.to_flows]
    with torch.no_grad():
        gen(image, image, image)
    for h in handles:
        h.remove()
    return seen


def test_gain_zero_is_the_identity_warp_with_half_mask() -> None:
    torch.manual_seed(0)
    gen = Generator(GeneratorConfig.tiny())
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    lia = _flow_offsets(gen, image)
    assert min(float(off.mean()) for _, _, off in lia) > 0.2  # LIA's init: large random flow
    gen.synthesis.scale_flow_init(0.0)
    levels = _flow_offsets(gen, image)
    assert len(levels) == len(gen.synthesis.to_flows)
    for warped, feat, off in levels:
        assert float(off.max()) == 0.0
        # the warp is the identity grid (upstream's linspace grid with align_corners False, which
        # resamples by under a pixel), and the mask is sigmoid(0) = 0.5
        size = feat.shape[-1]
        grid = sampling_grid(size, feat.device, feat.dtype).expand(feat.shape[0], -1, -1, -1)
        still = F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        torch.testing.assert_close(warped, 0.5 * still, atol=1e-5, rtol=1e-5)
        centre = slice(size // 4, size - size // 4)
        assert float((still - feat)[..., centre, centre].abs().max()) < 0.6 * float(feat.abs().max())


def test_gain_zero_still_learns_the_flow() -> None:
    torch.manual_seed(0)
    gen = Generator(GeneratorConfig.tiny())
    gen.synthesis.scale_flow_init(0.0)
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    gen(image, image.flip(-1), image.flip(-1)).sub(image.flip(-1)).abs().mean().backward()
    grads = [m.conv.weight.grad for m in gen.synthesis.to_flows if isinstance(m, ToFlow)]
    assert all(g is not None and float(g.abs().sum()) > 0 for g in grads)


def test_negative_gain_is_an_error() -> None:
    gen = Generator(GeneratorConfig.tiny())
    with pytest.raises(ValueError, match="-1"):
        gen.synthesis.scale_flow_init(-1.0)


def test_stage_config_applies_the_gain() -> None:
    import warnings

    from edtalk.stages import stage_class
    from edtalk.train import compose

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "starts from scratch"
        for gain, zero in ((0.0, True), (1.0, False)):
            cfg = compose("reconstruct", [f"model.flow_init_gain={gain}"], debug=True)
            gen = stage_class("reconstruct").build(cfg).generator
            weights = [m.conv.weight for m in gen.synthesis.to_flows if isinstance(m, ToFlow)]
            assert all(bool((w == 0).all()) == zero for w in weights), gain
