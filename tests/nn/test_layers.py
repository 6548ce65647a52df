"""StyleGAN2 primitives against straightforward reference formulations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edtalk.nn.layers import ModulatedConv2d, make_kernel, upfirdn2d


def upfirdn2d_reference(x: torch.Tensor, kernel: torch.Tensor, up: int, pad: tuple[int, int]) -> torch.Tensor:
    """Literal zero insertion -> zero padding -> convolution with the kernel (StyleGAN2's native version)."""
    b, c, h, w = x.shape
    out = x.reshape(b * c, 1, h, 1, w, 1)
    out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1]).reshape(b * c, 1, h * up, w * up)
    out = F.pad(out, [pad[0], pad[1], pad[0], pad[1]])
    out = F.conv2d(out, torch.flip(kernel, [0, 1])[None, None].to(x.dtype))
    return out.reshape(b, c, out.shape[-2], out.shape[-1])


@pytest.mark.parametrize(("up", "pad"), [(1, (2, 2)), (1, (1, 1)), (1, (2, 1)), (2, (2, 1)), (2, (1, 1))])
def test_upfirdn2d_matches_reference(up: int, pad: tuple[int, int]) -> None:
    x = torch.randn(2, 5, 8, 8, dtype=torch.float64)
    kernel = torch.rand(4, 4, dtype=torch.float64)  # asymmetric on purpose: checks the flip convention
    assert torch.allclose(upfirdn2d(x, kernel, up, pad), upfirdn2d_reference(x, kernel, up, pad), atol=1e-12)


def test_make_kernel_is_normalised_outer_product() -> None:
    k = make_kernel()
    assert k.shape == (4, 4) and torch.isclose(k.sum(), torch.tensor(1.0))
    assert torch.allclose(k, torch.tensor([1.0, 3, 3, 1])[:, None] * torch.tensor([1.0, 3, 3, 1])[None] / 64)


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("demodulate", [False, True])
def test_modulated_conv_equals_grouped_form(upsample: bool, demodulate: bool) -> None:
    """The shared-weight scaling form equals the original per-sample grouped convolution."""
    torch.manual_seed(0)
    mod = ModulatedConv2d(6, 4, 3, 8, demodulate=demodulate, upsample=upsample).double()
    x, style = torch.randn(3, 6, 5, 5, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    b = x.shape[0]
    s = mod.modulation(style).view(b, 1, 6, 1, 1)
    weight = mod.scale * mod.weight * s
    if demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, 4, 1, 1, 1)
    if upsample:
        w = weight.transpose(1, 2).reshape(b * 6, 4, 3, 3)
        ref = F.conv_transpose2d(x.reshape(1, b * 6, 5, 5), w, stride=2, groups=b)
        ref = mod.blur(ref.view(b, 4, ref.shape[-2], ref.shape[-1]))
    else:
        ref = F.conv2d(x.reshape(1, b * 6, 5, 5), weight.view(b * 4, 6, 3, 3), padding=1, groups=b).view(
            b, 4, 5, 5
        )
    assert torch.allclose(mod(x, style), ref, atol=1e-12)
