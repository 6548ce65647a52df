"""Typed configuration dataclasses shared by the networks, stages and checkpoints.

A `GeneratorConfig` travels inside every checkpoint we write, so a model rebuilds with no flags.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, Self

Variant = Literal["full", "lip_pose"]


def config_from_dict(cls: Any, d: dict[str, Any]) -> Any:
    """Rebuild a (possibly nested) frozen config dataclass from `dataclasses.asdict` output.

    Lists become tuples where the field default is a tuple; unknown keys are errors naming the keys.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {sorted(unknown)}; known: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in d.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            value = config_from_dict(type(default), value)
        elif isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


class SerializableConfig:
    """`to_dict` / `from_dict` for the frozen config dataclasses saved inside checkpoints."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        out: Self = config_from_dict(cls, d)
        return out


# Channel width per resolution of the LIA/StyleGAN2 encoder and decoder (channel multiplier 1).
BASE_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


@dataclass(frozen=True)
class GeneratorConfig(SerializableConfig):
    """Hyper-parameters of the EDTalk generator.

    Attributes:
        size: image side (power of two, >= 64).
        style_dim: latent width (w_a, motion MLP, modulation styles).
        mouth_dim / pose_dim / exp_dim: sizes of the three bases banks.
        channel_multiplier: scales the 64..1024-pixel levels (as in StyleGAN2); may be fractional.
        max_channels: cap on every level's width (512 upstream; tests use a few channels).
        variant: "full" (mouth + pose + expression, with EEM) or "lip_pose" (no expression parts).
        eem_hidden: hidden width of the EEM AdaIN MLP (128 upstream).
    """

    size: int = 256
    style_dim: int = 512
    mouth_dim: int = 20
    pose_dim: int = 6
    exp_dim: int = 10
    channel_multiplier: float = 1.0
    max_channels: int = 512
    variant: Variant = "full"
    eem_hidden: int = 128

    def __post_init__(self) -> None:
        log = math.log2(self.size) if self.size > 0 else -1
        if self.size < 64 or log != int(log):
            raise ValueError(f"GeneratorConfig.size must be a power of two >= 64, got {self.size}")
        if self.variant not in ("full", "lip_pose"):
            raise ValueError(f"GeneratorConfig.variant must be 'full' or 'lip_pose', got {self.variant!r}")
        if self.style_dim < self.motion_dim:
            raise ValueError(
                f"style_dim ({self.style_dim}) must be >= the total bank size ({self.motion_dim}) for QR"
            )

    @property
    def has_expression(self) -> bool:
        return self.variant == "full"

    @property
    def motion_dim(self) -> int:
        """Number of bank directions (36 for full, 26 for lip_pose)."""
        return self.mouth_dim + self.pose_dim + (self.exp_dim if self.variant == "full" else 0)

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    def channels(self, resolution: int) -> int:
        """Feature width at `resolution` (e.g. 512 at 8x8, 64 at 256x256 for the official model)."""
        base = BASE_CHANNELS[resolution]
        scaled = base if resolution <= 32 else int(base * self.channel_multiplier)
        return max(1, min(self.max_channels, scaled))

    @classmethod
    def tiny(cls, variant: Variant = "full", size: int = 64) -> GeneratorConfig:
        """A few-channel model for tests and debug runs (seconds on a CPU)."""
        return cls(
            size=size,
            style_dim=48,
            channel_multiplier=0.125,
            max_channels=16,
            variant=variant,
            eem_hidden=16,
        )
