"""StyleGAN2 building blocks shared by the encoder, the synthesis network and the discriminator.

Written once here (the original code carries ~15 copies). Numerics follow the StyleGAN2 / LIA
reference: equalised learning rate (weights stored as N(0, 1), scaled by 1/sqrt(fan_in) at run
time), fused leaky ReLU with gain sqrt(2), FIR blur/upsample with the [1, 3, 3, 1] kernel.

Blur kernels are fixed, so they are non-persistent buffers: they are not in our state dict
(`edtalk.weights` checks the official files' copies against `make_kernel` and drops them).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

BLUR_KERNEL = (1, 3, 3, 1)
SQRT2 = math.sqrt(2.0)


def frozen_cache(
    module: nn.Module, key: str, weight: torch.Tensor, fn: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """`fn()` cached on `module` while `weight` cannot change (no autograd); recomputed after updates.

    Inference reuses derived weights (equalised-LR scaling, demodulation norms) across calls instead of
    recomputing them for every chunk of frames; training always recomputes them.
    """
    if torch.is_grad_enabled() and weight.requires_grad:
        return fn()
    cache: dict[str, tuple[tuple[int, torch.device, torch.dtype], torch.Tensor]] = module.__dict__.setdefault(
        "_frozen_cache", {}
    )
    stamp = (weight._version, weight.device, weight.dtype)
    hit = cache.get(key)
    if hit is None or hit[0] != stamp or hit[1].data_ptr() == 0:
        cache[key] = (stamp, fn())
    return cache[key][1]


def float32_region(x: torch.Tensor, enabled: bool = True) -> contextlib.AbstractContextManager[Any]:
    """Autocast off on `x`'s device: a float32 island under bf16 autocast (without autocast: no effect).

    The enclosed ops compute in their inputs' dtype, so callers lift inputs with `at_least_float32`.
    """
    return torch.autocast(x.device.type, enabled=False) if enabled else contextlib.nullcontext()


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32 if it is a narrower float (bf16/fp16); float32 and float64 pass unchanged."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def make_kernel(k: Sequence[float] = BLUR_KERNEL) -> torch.Tensor:
    """Separable FIR kernel: outer product of `k` with itself, normalised to sum 1 (K x K)."""
    t = torch.tensor(k, dtype=torch.float32)
    kernel = t[None, :] * t[:, None]
    return kernel / kernel.sum()


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Zero-insertion upsampling by `up`, zero padding, then a per-channel FIR filter (StyleGAN2's upfirdn2d).

    Computed as one depthwise convolution (up = 1) or one depthwise transposed convolution with
    stride `up`, which equals zero insertion + padding + filtering without materialising either.

    Args:
        x: B x C x H x W.
        kernel: K x K FIR kernel (true convolution, as the reference).
        up: upsampling factor.
        pad: (before, after) padding of both spatial axes after upsampling.

    Returns:
        B x C x (H*up + p0 + p1 - K + 1) x (W*up + p0 + p1 - K + 1).
    """
    c, k = x.shape[1], kernel.shape[0]
    p0, p1 = pad
    if up == 1:
        weight = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(c, 1, k, k)
        if p0 != p1:
            return F.conv2d(F.pad(x, [p0, p1, p0, p1]), weight, groups=c)
        return F.conv2d(x, weight, padding=p0, groups=c)
    crop = k - 1 - p0  # transposed conv output index m + crop is upfirdn's output m
    extra = up + p1 - p0 - 1  # samples missing at the end after cropping `crop` on both sides
    if crop < 0 or not 0 <= extra < up:
        raise ValueError(f"upfirdn2d: unsupported padding {pad} for kernel {k} and up {up}")
    weight = kernel.to(x.dtype)[None, None].expand(c, 1, k, k)
    return F.conv_transpose2d(x, weight, stride=up, padding=crop, output_padding=extra, groups=c)


class Blur(nn.Module):
    """FIR low-pass filter (used before strided convs and after transposed convs)."""

    kernel: torch.Tensor

    def __init__(self, pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel() * upsample_factor**2, persistent=False)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling (StyleGAN2 skip connections)."""

    kernel: torch.Tensor

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel() * factor**2, persistent=False)
        p = self.kernel.shape[0] - factor
        self.factor = factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, slope: float = 0.2) -> torch.Tensor:
    """leaky_relu(x + bias) * sqrt(2); `bias` broadcasts over channels (dim 1)."""
    if bias.ndim == 1:
        bias = bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x + bias, slope) * SQRT2


class FusedLeakyReLU(nn.Module):
    """Per-channel bias + leaky ReLU (slope 0.2) with gain sqrt(2); bias stored as 1 x C x 1 x 1."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias, 0.2) * SQRT2


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate: weight ~ N(0, 1) scaled by 1/sqrt(fan_in) at run time."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate; `activation=True` applies the fused leaky ReLU."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = 1.0 / math.sqrt(in_dim) * lr_mul
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            return fused_leaky_relu(out, bias) if bias is not None else F.leaky_relu(out, 0.2) * SQRT2
        return F.linear(x, self.weight * self.scale, bias)


class ConvLayer(nn.Sequential):
    """[Blur if downsample] -> EqualConv2d -> [FusedLeakyReLU if activate].

    The Sequential indices (blur 0, conv 0/1, activation 1/2) are the state-dict layout of the
    official checkpoints. The forward fuses the epilogue: the activation's bias goes into the conv,
    and the sqrt(2) gain (times an optional extra `gain`) into the conv weight, using
    leaky_relu(a * z) = a * leaky_relu(z) for a > 0; the activation then runs in place.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        downsample: bool = False,
        bias: bool = True,
        activate: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(BLUR_KERNEL) - 2) + (kernel - 1)
            layers.append(Blur(pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel // 2
        layers.append(EqualConv2d(in_ch, out_ch, kernel, stride, padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_ch) if bias else ScaledLeakyReLU())
        super().__init__(*layers)
        self._blur = downsample
        self._activate = activate

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """x: B x Cin x H x W -> B x Cout x H' x W', multiplied by `gain`."""
        if self._blur:
            x = self[0](x)
        conv = cast(EqualConv2d, self[int(self._blur)])
        if not self._activate:
            bias = conv.bias * gain if conv.bias is not None else None
            weight = frozen_cache(self, f"w{gain}", conv.weight, lambda: conv.weight * (conv.scale * gain))
            return F.conv2d(x, weight, bias, conv.stride, conv.padding)
        g = SQRT2 * gain
        act = self[-1]
        bias = act.bias.view(-1) * g if isinstance(act, FusedLeakyReLU) else None
        weight = frozen_cache(self, f"w{g}", conv.weight, lambda: conv.weight * (conv.scale * g))
        out = F.conv2d(x, weight, bias, conv.stride, conv.padding)
        return F.leaky_relu(out, 0.2, inplace=True)


class ScaledLeakyReLU(nn.Module):
    """Leaky ReLU (slope 0.2) with gain sqrt(2) and no bias."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.2) * SQRT2


class ResBlock(nn.Module):
    """Residual downsampling block: (conv3x3 -> blur+conv3x3/2 + blur+conv1x1/2) / sqrt(2)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the final 1/sqrt(2) is folded into both branches' weights
        out = self.conv2(self.conv1(x), gain=1 / SQRT2)
        skip = self.skip(x, gain=1 / SQRT2)
        # in place only without autograd: leaky_relu's backward needs its (unmodified) output
        return out.add_(skip) if not torch.is_grad_enabled() else out + skip


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution.

    For one sample the style (and demodulation) is folded into the weight, as the original does; for a
    batch it runs in the per-sample scaling form: modulate the input channels, convolve with the one
    shared weight, demodulate the output channels, so the batch shares one conv call instead of a
    grouped convolution. Both equal the original up to float rounding. `gain` and `bias` fuse the
    caller's epilogue (out * gain + bias).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
    ) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel
        self.demodulate, self.upsample = demodulate, upsample
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.padding = kernel // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel, kernel))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        if upsample:
            p = (len(BLUR_KERNEL) - 2) - (kernel - 1)
            self.blur = Blur(pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)

    def _conv(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, transposed: bool = False
    ) -> torch.Tensor:
        """Plain conv, or transposed conv + blur when upsampling. `weight`: Cout x Cin x k x k, or with
        `transposed` already in the transposed-conv layout Cin x Cout x k x k."""
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight if transposed else weight.transpose(0, 1), stride=2))
            return out if bias is None else out.add_(bias.view(1, -1, 1, 1))
        return F.conv2d(x, weight, bias, padding=self.padding)

    def forward(
        self, x: torch.Tensor, style: torch.Tensor, gain: float = 1.0, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: B x Cin x H x W, style: B x S -> (B x Cout x H' x W') * gain + bias (H' = 2H when upsampling)."""
        s = self.modulation(style)  # -> B x Cin
        weight = frozen_cache(
            self, "w", self.weight, lambda: self.weight[0] * self.scale
        )  # -> Cout x Cin x k x k
        if x.shape[0] == 1:
            weight = weight * s[0].view(1, -1, 1, 1)
            if self.demodulate:
                gain = torch.rsqrt(weight.square().sum(dim=(1, 2, 3)) + 1e-8).view(-1, 1, 1, 1) * gain  # type: ignore[assignment]
            return self._conv(x, weight * gain, bias)
        if self.upsample:  # the transposed-conv layout, made once per weight update
            shared = frozen_cache(self, "wt", self.weight, lambda: weight.transpose(0, 1).contiguous())
            out = self._conv(x * s[:, :, None, None], shared, None, transposed=True)
        else:
            out = self._conv(x * s[:, :, None, None], weight, None)
        scale = s.new_full((x.shape[0], self.out_ch), gain)
        if self.demodulate:
            w2 = frozen_cache(
                self, "w2", self.weight, lambda: weight.square().sum(dim=(2, 3))
            )  # -> Cout x Cin
            with float32_region(s):  # demodulation statistics in float32 under bf16 autocast
                scale = torch.rsqrt(at_least_float32(s).square() @ w2.t() + 1e-8) * gain  # -> B x Cout
        # the epilogue in the conv's dtype: under bf16 autocast the activations stay bf16 (no float32 round trip)
        scale = scale.to(out.dtype)[:, :, None, None]
        if bias is None:
            return out.mul_(scale)
        return torch.addcmul(bias.to(out.dtype).view(1, -1, 1, 1), out, scale)


class StyledConv(nn.Module):
    """ModulatedConv2d -> (noise injection: identity at inference, as in LIA) -> FusedLeakyReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel, style_dim, upsample=upsample)
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # leaky_relu(z + b) * sqrt(2) == leaky_relu(sqrt(2) z + sqrt(2) b): bias and gain fused into the conv
        out = self.conv(x, style, gain=SQRT2, bias=self.activate.bias.view(-1) * SQRT2)
        return F.leaky_relu(out, 0.2, inplace=True)


class ConstantInput(nn.Module):
    """Learned 1 x C x 4 x 4 input of the synthesis network, repeated over the batch."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)
