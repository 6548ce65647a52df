"""GFPGAN v1.4 face restorer, "clean" architecture (Wang et al., CVPR 2021: GFP-GAN).

The paper's blind face restoration network: a U-Net degradation-removal module whose bottleneck
gives the latent codes of a pretrained StyleGAN2 ("generative facial prior"), and whose decoder
levels give Spatial Feature Transform (SFT) scale/shift maps that modulate half of the StyleGAN2
features at every resolution (channel-split SFT, `sft_half`). The "clean" variant uses bilinear
resampling and plain convolutions (no custom CUDA ops).

Layout: the module and parameter names follow the official `GFPGANv1.4.pth` (`params_ema`) exactly, so
that file loads with `strict=True` (see `edtalk.apps.facesr.load_gfpgan`); `tests/data/manifests/gfpgan_v1_4.json`
lists every key and shape.

Differences from the reference forward, both numerically neutral for the official weights' use:
- modulated convolutions scale the input and demodulate the output of one shared convolution
  (mathematically equal to per-sample weights with a grouped convolution; faster in batches);
- the U-Net's intermediate RGB heads (`toRGB`, used only by the training losses) are kept for the
  weight layout but never run;
- noise injection uses the stored noise buffers by default (deterministic, identical in and out of a
  batch, no flicker between video frames); `randomize_noise=True` draws fresh noise as GFPGANer does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edtalk.config import SerializableConfig

# Width per resolution of StyleGAN2 at channel multiplier 1 (levels >= 64 scale with the multiplier).
_BASE = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


@dataclass(frozen=True)
class GFPGANConfig(SerializableConfig):
    """Hyper-parameters of `GFPGAN` (defaults: the official v1.4 model).

    Attributes:
        out_size: image side in and out (power of two >= 8; 512 for v1.4).
        style_dim: latent width of the StyleGAN2 decoder.
        channel_multiplier: widens the >= 64 px levels (2 for v1.4).
        narrow: scales every width (1 for v1.4; tests use 1/16).
        num_mlp: layers of the StyleGAN2 mapping MLP (present in the file; unused when
            `input_is_latent`).
        sft_half: apply SFT to half of the decoder channels only.
        different_w: one latent per decoder layer (the U-Net predicts all of them).
        input_is_latent: the U-Net output is already in W space (skip the mapping MLP).
    """

    out_size: int = 512
    style_dim: int = 512
    channel_multiplier: float = 2
    narrow: float = 1.0
    num_mlp: int = 8
    sft_half: bool = True
    different_w: bool = True
    input_is_latent: bool = True

    def __post_init__(self) -> None:
        log = math.log2(self.out_size) if self.out_size > 0 else -1
        if self.out_size < 8 or log != int(log):
            raise ValueError(f"GFPGANConfig.out_size must be a power of two >= 8, got {self.out_size}")
        if self.sft_half and any(self.decoder_channels(r) % 2 for r in self.levels):
            raise ValueError(f"sft_half needs even decoder widths; narrow={self.narrow} gives odd ones")

    @property
    def log_size(self) -> int:
        return int(math.log2(self.out_size))

    @property
    def levels(self) -> list[int]:
        """Resolutions of the decoder's upsampling levels: 8, 16, ..., out_size."""
        return [2**i for i in range(3, self.log_size + 1)]

    @property
    def num_latents(self) -> int:
        """Per-layer latents of the decoder (16 at 512²)."""
        return 2 * self.log_size - 2

    def decoder_channels(self, resolution: int) -> int:
        scale = self.channel_multiplier if resolution >= 64 else 1
        return int(_BASE[resolution] * scale * self.narrow)

    def unet_channels(self, resolution: int) -> int:
        scale = self.channel_multiplier if resolution >= 64 else 1
        return int(_BASE[resolution] * scale * self.narrow * 0.5)

    @classmethod
    def tiny(cls, out_size: int = 512) -> GFPGANConfig:
        """A 1/16-width model (decoder 32..4 channels, the official key set) for tests and demos."""
        return cls(out_size=out_size, style_dim=32, narrow=1 / 16)


# -- U-Net parts -------------------------------------------------------------------------------
class ResampleBlock(nn.Module):
    """Residual block that halves ("down") or doubles ("up") the resolution with bilinear resampling."""

    def __init__(self, in_ch: int, out_ch: int, mode: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, in_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_ch, out_ch, 3, 1, 1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.factor = {"down": 0.5, "up": 2.0}[mode]

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.factor, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv1(x), 0.2)
        out = F.leaky_relu(self.conv2(self._resample(out)), 0.2)
        return out + self.skip(self._resample(x))


def _sft_head(ch: int, out_ch: int) -> nn.Sequential:
    """conv3x3 - LeakyReLU - conv3x3: one SFT scale or shift map per U-Net decoder level."""
    return nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(ch, out_ch, 3, 1, 1))


# -- StyleGAN2 ("clean") parts ---------------------------------------------------------------------
class NormStyleCode(nn.Module):
    """Pixel norm of the style codes (first layer of the mapping MLP)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (no bias), optional 2x bilinear upsampling of the input.

    Computed as conv(x * s, W) * d with s = modulation(style) and d = rsqrt(sum_(i,k) (W s)^2 + eps):
    the same numbers as convolving each sample with its own modulated weight.
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, style_dim: int, demodulate: bool, upsample: bool
    ) -> None:
        super().__init__()
        self.modulation = nn.Linear(style_dim, in_ch)
        nn.init.kaiming_normal_(self.modulation.weight, mode="fan_in", nonlinearity="linear")
        nn.init.ones_(self.modulation.bias)
        self.weight = nn.Parameter(
            torch.randn(1, out_ch, in_ch, kernel, kernel) / math.sqrt(in_ch * kernel**2)
        )
        self.demodulate, self.upsample, self.eps = demodulate, upsample, 1e-8

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """x: B x Cin x H x W, style: B x D -> B x Cout x H' x W' (H' = 2H when upsampling)."""
        s = self.modulation(style)  # -> B x Cin
        weight = self.weight[0]  # -> Cout x Cin x k x k
        x = x * s[:, :, None, None]
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
        if self.demodulate:
            energy = s.pow(2) @ weight.pow(2).sum((2, 3)).t()  # -> B x Cout
            out = out * torch.rsqrt(energy + self.eps)[:, :, None, None]
        return out


class StyleConv(nn.Module):
    """Modulated 3x3 conv, noise injection (learned strength `weight`), bias, LeakyReLU."""

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, upsample: bool) -> None:
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, True, upsample)
        self.weight = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(1, out_ch, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        out = self.modulated_conv(x, style) * math.sqrt(2)
        if noise is None:  # fresh noise per sample
            noise = out.new_empty(out.shape[0], 1, *out.shape[2:]).normal_()
        return F.leaky_relu(out + self.weight * noise + self.bias, 0.2)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation), plus the upsampled RGB of the previous level."""

    def __init__(self, in_ch: int, style_dim: int, upsample: bool) -> None:
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_ch, 3, 1, style_dim, False, False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.upsample = upsample

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            if self.upsample:
                skip = F.interpolate(skip, scale_factor=2, mode="bilinear", align_corners=False)
            out = out + skip
        return out


class ConstantInput(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, ch, 4, 4))

    def forward(self, batch: int) -> torch.Tensor:
        return self.weight.expand(batch, -1, -1, -1)


class StyleDecoder(nn.Module):
    """StyleGAN2 generator ("clean") whose features are modulated by SFT conditions at each level."""

    def __init__(self, cfg: GFPGANConfig) -> None:
        super().__init__()
        d = cfg.style_dim
        mlp: list[nn.Module] = [NormStyleCode()]
        for _ in range(cfg.num_mlp):
            mlp += [nn.Linear(d, d), nn.LeakyReLU(0.2)]
        self.style_mlp = nn.Sequential(*mlp)  # never run for v1.4 (input_is_latent); kept for the layout
        c4 = cfg.decoder_channels(4)
        self.constant_input = ConstantInput(c4)
        self.style_conv1 = StyleConv(c4, c4, d, upsample=False)
        self.to_rgb1 = ToRGB(c4, d, upsample=False)
        self.num_layers = 2 * (cfg.log_size - 2) + 1
        self.noises = nn.Module()
        for i in range(self.num_layers):  # noise i sits at resolution 4, 8, 8, 16, 16, ...
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise{i}", torch.randn(1, 1, res, res))
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = c4
        for res in cfg.levels:
            out_ch = cfg.decoder_channels(res)
            self.style_convs.append(StyleConv(in_ch, out_ch, d, upsample=True))
            self.style_convs.append(StyleConv(out_ch, out_ch, d, upsample=False))
            self.to_rgbs.append(ToRGB(out_ch, d, upsample=True))
            in_ch = out_ch
        self.sft_half = cfg.sft_half

    def _noise(self, i: int, randomize: bool) -> torch.Tensor | None:
        return None if randomize else getattr(self.noises, f"noise{i}")

    def _sft(self, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        if not self.sft_half:
            return x * scale + shift
        same, mod = x.chunk(2, dim=1)
        return torch.cat([same, mod * scale + shift], dim=1)

    def forward(
        self,
        latents: torch.Tensor,
        conditions: list[tuple[torch.Tensor, torch.Tensor]],
        randomize_noise: bool = False,
    ) -> torch.Tensor:
        """latents: B x L x D (L = 2 log2(size) - 2); conditions: (scale, shift) per level -> B x 3 x S x S."""
        out = self.style_conv1(
            self.constant_input(len(latents)), latents[:, 0], self._noise(0, randomize_noise)
        )
        rgb = self.to_rgb1(out, latents[:, 1], None)
        for level, (scale, shift) in enumerate(conditions):
            i = 2 * level + 1  # latent / noise index of this level's first conv
            up, conv, to_rgb = (
                self.style_convs[2 * level],
                self.style_convs[2 * level + 1],
                self.to_rgbs[level],
            )
            out = self._sft(up(out, latents[:, i], self._noise(i, randomize_noise)), scale, shift)
            out = conv(out, latents[:, i + 1], self._noise(i + 1, randomize_noise))
            rgb = to_rgb(out, latents[:, i + 2], rgb)
        return rgb


# -- the restorer --------------------------------------------------------------------------------
class GFPGAN(nn.Module):
    """GFPGANv1Clean: degraded face B x 3 x S x S in [-1, 1] -> restored face B x 3 x S x S (not clamped).

    Example:
        net = GFPGAN()  # the v1.4 architecture; load weights with edtalk.apps.facesr.load_gfpgan
        restored = net(faces_512)  # faces aligned roughly like FFHQ crops
    """

    def __init__(self, cfg: GFPGANConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or GFPGANConfig()
        unet = cfg.unet_channels
        self.conv_body_first = nn.Conv2d(3, unet(cfg.out_size), 1)
        self.conv_body_down = nn.ModuleList()
        in_ch = unet(cfg.out_size)
        for res in reversed(cfg.levels):  # out_size -> 4
            self.conv_body_down.append(ResampleBlock(in_ch, unet(res // 2), "down"))
            in_ch = unet(res // 2)
        self.final_conv = nn.Conv2d(in_ch, unet(4), 3, 1, 1)
        self.conv_body_up = nn.ModuleList()
        in_ch = unet(4)
        for res in cfg.levels:  # 8 -> out_size
            self.conv_body_up.append(ResampleBlock(in_ch, unet(res), "up"))
            in_ch = unet(res)
        self.toRGB = nn.ModuleList(nn.Conv2d(unet(res), 3, 1) for res in cfg.levels)  # training-only heads
        n_latents = cfg.num_latents if cfg.different_w else 1
        self.final_linear = nn.Linear(unet(4) * 16, n_latents * cfg.style_dim)
        self.stylegan_decoder = StyleDecoder(cfg)
        sft = 1 if cfg.sft_half else 2  # SFT maps cover half / all of the decoder width (2x U-Net width)
        self.condition_scale = nn.ModuleList(_sft_head(unet(r), sft * unet(r)) for r in cfg.levels)
        self.condition_shift = nn.ModuleList(_sft_head(unet(r), sft * unet(r)) for r in cfg.levels)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """U-Net encoder: B x 3 x S x S -> bottleneck B x C4 x 4 x 4 and skips (4 x 4 first)."""
        feat = F.leaky_relu(self.conv_body_first(x), 0.2)
        skips: list[torch.Tensor] = []
        for block in self.conv_body_down:
            feat = block(feat)
            skips.insert(0, feat)
        return F.leaky_relu(self.final_conv(feat), 0.2), skips

    def _latents(self, feat: torch.Tensor) -> torch.Tensor:
        """Bottleneck -> decoder latents B x L x D."""
        cfg = self.cfg
        code = self.final_linear(feat.flatten(1))  # -> B x (L' * D), L' = L or 1
        code = code.view(len(feat), -1, cfg.style_dim)  # -> B x L' x D
        if not cfg.input_is_latent:
            code = self.stylegan_decoder.style_mlp(code.flatten(0, 1)).view_as(code)
        return code.expand(-1, cfg.num_latents, -1) if code.shape[1] == 1 else code

    def forward(self, x: torch.Tensor, randomize_noise: bool = False) -> torch.Tensor:
        """x: B x 3 x S x S in [-1, 1] (S = cfg.out_size) -> B x 3 x S x S (not clamped)."""
        if x.shape[-2:] != (self.cfg.out_size, self.cfg.out_size):
            raise ValueError(
                f"GFPGAN expects {self.cfg.out_size}x{self.cfg.out_size} faces, got {tuple(x.shape[-2:])}; "
                "resize first (edtalk.apps.facesr.FaceRestorer does)"
            )
        feat, skips = self._encode(x)
        latents = self._latents(feat)
        conditions = []
        for skip, up, scale, shift in zip(
            skips, self.conv_body_up, self.condition_scale, self.condition_shift
        ):
            feat = up(feat + skip)
            conditions.append((scale(feat), shift(feat)))
        return self.stylegan_decoder(latents, conditions, randomize_noise)


def infer_gfpgan_config(sd: Mapping[str, torch.Tensor]) -> GFPGANConfig:
    """`GFPGANConfig` from the shapes of a GFPGANv1Clean state dict (v1.4: the default config).

    `input_is_latent` leaves no trace in the weights; it is True, as GFPGANer builds v1.3/v1.4.
    """
    n_down = len({k.split(".")[1] for k in sd if k.startswith("conv_body_down.")})
    style_dim = sd["stylegan_decoder.style_mlp.1.weight"].shape[0]
    c4 = sd["stylegan_decoder.constant_input.weight"].shape[1]
    narrow = c4 / 512
    out_size = 2 ** (n_down + 2)
    cm = 1.0
    if out_size >= 64:  # level 64 is the first one scaled by the channel multiplier
        cm = sd[f"stylegan_decoder.style_convs.{2 * 3}.bias"].shape[1] / (256 * narrow)
    cfg = GFPGANConfig(
        out_size=out_size,
        style_dim=style_dim,
        channel_multiplier=int(cm) if cm == int(cm) else cm,
        narrow=narrow,
        num_mlp=sum(1 for k in sd if k.startswith("stylegan_decoder.style_mlp.") and k.endswith(".weight")),
        sft_half=sd["condition_scale.0.2.weight"].shape[0] == sd["condition_scale.0.0.weight"].shape[0],
    )
    return dataclasses.replace(cfg, different_w=sd["final_linear.weight"].shape[0] != style_dim)
