"""Typed configuration dataclasses shared by the networks, stages and checkpoints.

A `GeneratorConfig` travels inside every checkpoint we write, so a model rebuilds with no flags.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self

if TYPE_CHECKING:
    from omegaconf import DictConfig

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
        orthogonal_banks: orthonormalise the banks by QR (the paper); False uses the plain W
            (the paper's "w/o orthogonality" ablation, `model.ablation.no_orthogonality`).
        eem: the expression latent modulates the decoder features through EEM (the paper); False
            adds it to the latent only (the "w/o EEM" ablation, `model.ablation.no_eem`).
        exp_encoder: where the expression weights come from (full variant): "shared" (the paper and
            the official weights: ELN `navigator.exp_fc` on the motion code of E) or "cnn" (ours: a
            BatchNorm CNN of its own reads them from the driving frame, `edtalk.nn.encoder.
            ExpressionEncoder`; no `navigator.exp_fc` then).
        exp_encoder_width: the "cnn" reader's first width (then 2x, 4x, 8x).
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
    orthogonal_banks: bool = True
    eem: bool = True
    exp_encoder: str = "shared"
    exp_encoder_width: int = 32

    def __post_init__(self) -> None:
        log = math.log2(self.size) if self.size > 0 else -1
        if self.size < 64 or log != int(log):
            raise ValueError(f"size={self.size!r}: expected a power of two >= 64")
        if self.variant not in ("full", "lip_pose"):
            raise ValueError(f"variant={self.variant!r}: expected 'full' or 'lip_pose'")
        if self.exp_encoder not in ("shared", "cnn"):
            raise ValueError(
                f"exp_encoder={self.exp_encoder!r}: expected 'shared' (the paper's ELN) or 'cnn'"
            )
        if self.exp_encoder_width < 1:
            raise ValueError(f"exp_encoder_width={self.exp_encoder_width!r}: expected >= 1")
        if self.style_dim < self.motion_dim:
            raise ValueError(
                f"style_dim={self.style_dim}: expected >= the total bank size ({self.motion_dim}) for QR"
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


@dataclass(frozen=True)
class DiscriminatorConfig(SerializableConfig):
    """The `discriminator:` section: the StyleGAN2 image discriminator of the GAN stages.

    Attributes:
        enabled: train with an adversarial term (False: no discriminator is built).
        channel_multiplier: scales the 64..1024-pixel levels, as in `GeneratorConfig`.
        max_channels: cap on every level's width.
    """

    enabled: bool = True
    channel_multiplier: float = 1.0
    max_channels: int = 512

    def __post_init__(self) -> None:
        if self.channel_multiplier <= 0:
            raise ValueError(f"channel_multiplier={self.channel_multiplier!r}: expected a number > 0")
        if self.max_channels < 1:
            raise ValueError(f"max_channels={self.max_channels!r}: expected an integer >= 1")

    @classmethod
    def tiny(cls) -> DiscriminatorConfig:
        """The few-channel discriminator beside `GeneratorConfig.tiny()` (tests and `--debug` runs)."""
        return cls(channel_multiplier=0.125, max_channels=16)


@dataclass(frozen=True)
class FaultsConfig:
    """The `faults:` section: what training does when something goes wrong.

    Attributes:
        on_nonfinite: a NaN/Inf loss either stops training (an error naming the step, the last good
            checkpoint kept) or skips that update (recorded as a warning and `train/nonfinite_skipped`).
    """

    on_nonfinite: Literal["stop", "skip"] = "stop"


# -- the base of every run config -------------------------------------------------------------------
# Run-config sections whose keys and defaults are a dataclass's: experiments list only what they change.
SECTIONS: dict[str, Any] = {
    "generator": GeneratorConfig,
    "discriminator": DiscriminatorConfig,
    "faults": FaultsConfig,
}

# `model:` keys that follow another section unless a config sets them: the one place each link is written.
MODEL_LINKS: dict[str, str] = {
    "width": "${generator.channel_multiplier}",  # supervised stages' networks scale with the generator
}


_ABSENT = object()


def section_defaults(cls: Any) -> dict[str, Any]:
    """The defaults of a config dataclass as a plain dict (the start of its run-config section)."""
    out: dict[str, Any] = dataclasses.asdict(cls())
    return out


def compose_base(defaults: DictConfig, model: type, origin: str = "") -> DictConfig:
    """The base of a run config: `defaults` (experiments/defaults.yaml) with typed sections filled in.

    Each `SECTIONS` section becomes its dataclass's defaults updated by what `defaults` lists under it
    (plain values: `check_section` types them after composition, with one-line errors); `model:`
    becomes the stage's Config dataclass as an omegaconf structured node, with `MODEL_LINKS` as the
    defaults of the keys it has.

    Args:
        defaults: the loaded defaults file (changed in place and returned).
        model: the stage's `Config` dataclass.
        origin: where `defaults` came from, for error messages.

    Raises:
        ConfigError: a key `defaults` lists under a section that its dataclass has no field for.
    """
    from omegaconf import OmegaConf

    for name, cls in SECTIONS.items():
        section = section_defaults(cls)
        given = defaults.get(name) or {}
        unknown = sorted(set(given) - set(section))
        if unknown:
            raise ConfigError(
                f"unknown config key '{name}.{unknown[0]}'{_hint(unknown[0], section)}{_where(origin)}"
            )
        defaults[name] = OmegaConf.merge(section, given)
    typed = OmegaConf.structured(model)
    for key, link in MODEL_LINKS.items():
        if OmegaConf.select(typed, key, default=_ABSENT, throw_on_missing=False) is not _ABSENT:
            OmegaConf.update(typed, key, link, merge=False)
    defaults.model = OmegaConf.merge(typed, defaults.get("model") or {})
    return defaults


def check_optim(lrs: dict[str, float], betas: dict[str, list[float]]) -> None:
    """Value checks of Adam settings, for the optimiser configs' `__post_init__`.

    Raises:
        ValueError: naming the field, its value and what is expected (lr > 0, two betas in [0, 1)).
    """
    for name, lr in lrs.items():
        if not lr > 0:
            raise ValueError(f"{name}={lr!r}: expected a number > 0")
    for name, pair in betas.items():
        if len(pair) != 2 or not all(0 <= b < 1 for b in pair):
            raise ValueError(f"{name}={list(pair)!r}: expected two values in [0, 1) (Adam betas)")


# -- typed sections ------------------------------------------------------------------------------------
class ConfigError(ValueError):
    """A config value that does not fit its section: one line naming the key, the value and what is expected."""


def check_section(
    schema: Any, values: dict[str, Any], prefix: str, origin: str = "", build: bool = True
) -> Any:
    """Check a plain config section against a dataclass (then build it) or a callable's signature.

    Keys must be fields/parameters, values must fit their annotations (nested dataclasses are checked
    recursively), and a dataclass's own `__post_init__` checks run (with `build`). Returns the built
    dataclass instance, or None for a callable or without `build` (nothing is called).

    Raises:
        ConfigError: one line, e.g. "generator.size='abc': expected int".
    """
    import inspect
    import typing

    if dataclasses.is_dataclass(schema):
        params = {f.name: f.name for f in dataclasses.fields(schema) if f.init}
        hints = typing.get_type_hints(schema)
        accepts_more = False
    else:
        sig = inspect.signature(schema)
        params = {n: n for n, p in sig.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        hints = _hints_of(schema)
        accepts_more = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        full = f"{prefix}.{key}"
        if key not in params:
            if accepts_more:
                kwargs[key] = value
                continue
            raise ConfigError(f"unknown config key {full!r}{_hint(key, params)}{_where(origin)}")
        kwargs[key] = _checked(hints.get(key, Any), value, full, origin)
    if not build or not dataclasses.is_dataclass(schema):
        return None
    make: Any = schema
    try:
        return make(**kwargs)
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        line = _one_line(err)
        field = line.split("=", 1)[0]
        joined = f"{prefix}.{line}" if field in params else f"{prefix}: {line}"  # "model.optim.g_lr=0: ..."
        raise ConfigError(f"{joined}{_where(origin)}") from err


def _hints_of(fn: Any) -> dict[str, Any]:
    import typing

    target = fn.__init__ if isinstance(fn, type) else fn  # type: ignore[misc]
    try:
        return typing.get_type_hints(target)
    except (NameError, TypeError):  # annotations that cannot be resolved: check the keys only
        return {}


def _checked(tp: Any, value: Any, key: str, origin: str) -> Any:
    """`value` if it fits annotation `tp` (a nested dataclass section is checked and built)."""
    nested = [a for a in _arms(tp) if dataclasses.is_dataclass(a)]
    if nested and isinstance(value, dict):
        return check_section(nested[0], value, key, origin)
    if not fits(tp, value):
        raise ConfigError(f"{key}={value!r}: expected {describe(tp)}{_where(origin)}")
    rule = value_rule(key)
    if rule is not None and not rule.test(value):
        raise ConfigError(f"{key}={value!r}: expected {rule.words}{_where(origin)}")
    if isinstance(value, list) and _origin(tp) is tuple:
        return tuple(value)
    return value


def _origin(tp: Any) -> Any:
    import typing

    return typing.get_origin(tp)


def _arms(tp: Any) -> tuple[Any, ...]:
    """The alternatives of a Union/Optional annotation (the annotation itself otherwise)."""
    import types
    import typing

    if _origin(tp) in (typing.Union, types.UnionType):
        return tuple(a for arm in typing.get_args(tp) for a in _arms(arm))
    return (tp,)


def fits(tp: Any, value: Any) -> bool:
    """Whether a plain config value (YAML/CLI scalar, list, dict or None) fits annotation `tp`.

    Annotations we cannot judge (classes a YAML value can never be, Callables, TypeVars) accept.
    """
    import typing

    if tp is Any or isinstance(tp, typing.TypeVar):
        return True
    arms = _arms(tp)
    if len(arms) > 1:
        return any(fits(a, value) for a in arms)
    origin, args = _origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin is not None:
        return _fits_generic(origin, args, value)
    return _fits_class(tp, value)


def _fits_generic(origin: Any, args: tuple[Any, ...], value: Any) -> bool:
    import collections.abc as abc

    if origin in (list, tuple, set, frozenset, abc.Sequence, abc.Iterable, abc.Collection):
        if not isinstance(value, list | tuple):
            return False
        item = args[0] if args and (origin is not tuple or args[-1] is Ellipsis) else Any
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(fits(a, v) for a, v in zip(args, value))
        return all(fits(item, v) for v in value)
    if origin in (dict, abc.Mapping, abc.MutableMapping):
        return isinstance(value, dict)
    return True


def _fits_class(tp: Any, value: Any) -> bool:
    from pathlib import PurePath

    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if isinstance(tp, type) and issubclass(tp, PurePath):
        return isinstance(value, str)
    if isinstance(tp, type) and tp.__module__ != "builtins":
        return isinstance(value, tp)  # e.g. a Lightning Accelerator/Strategy object: never a YAML value
    return True


def describe(tp: Any) -> str:
    """Human words for an annotation: 'int', 'float or null', "one of 'full', 'lip_pose'", 'a list of float'."""
    import typing

    arms = _arms(tp)
    if len(arms) > 1:
        words = [describe(a) for a in arms if a is not type(None)]
        return " or ".join(dict.fromkeys(words)) + (" or null" if type(None) in arms else "")
    origin, args = _origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is not None and args:
        return f"a list of {describe(args[0])}" if origin is not dict else "a mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _hint(key: str, known: dict[str, str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f"; known keys: {sorted(known)}"


def _where(origin: str) -> str:
    return f" (in {origin})" if origin else ""


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


# -- value ranges --------------------------------------------------------------------------------------------
# What a key accepts beyond its type, checked by `check_section` while the run config is composed (so a bad
# value fails before a run folder exists). Lightning's own checks of the trainer.* values run only when the
# Trainer is built; these mirror them. Patterns are fnmatch patterns over the full key; the first match wins.
@dataclass(frozen=True)
class Accepts:
    """A test of a (well-typed) value and the words for what it accepts."""

    test: Callable[[Any], bool]
    words: str


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def at_least(low: float, *also: Any, words: str = "") -> Accepts:
    """Numbers >= `low` (and the special values `also`, e.g. -1 for "no limit", None for "off")."""
    shown = words or " or ".join([f"a number >= {low}", *(repr(a).replace("None", "null") for a in also)])
    return Accepts(lambda v: v in also or (_number(v) and v >= low), shown)


def above(low: float, *also: Any) -> Accepts:
    shown = " or ".join([f"a number > {low}", *(repr(a).replace("None", "null") for a in also)])
    return Accepts(lambda v: v in also or (_number(v) and v > low), shown)


def fraction(closed_high: bool = False) -> Accepts:
    high = "]" if closed_high else ")"
    return Accepts(
        lambda v: _number(v) and v >= 0 and (v <= 1 if closed_high else v < 1), f"a number in [0, 1{high}"
    )


def _batches(value: Any) -> bool:
    """Lightning's limit_*_batches / overfit_batches: a count >= 0 or a fraction in [0, 1]."""
    if value is None:
        return True
    if isinstance(value, float):
        return 0 <= value <= 1
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _devices(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        return value == "auto" or (
            bool(parts) and all(p.lstrip("-").isdigit() for p in parts) and value != "0"
        )
    return isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or value == -1)


def _registered(kind: str, value: Any) -> bool:
    """A name Lightning's accelerator/strategy registry knows (objects are not YAML values)."""
    if not isinstance(value, str):
        return True
    if kind == "accelerator":
        from lightning.pytorch.accelerators import AcceleratorRegistry

        names = {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}
    else:
        from lightning.pytorch.strategies import StrategyRegistry

        names = {"auto", *StrategyRegistry.available_strategies()}
    return value in names


def _val_check_interval(value: Any) -> bool:
    if isinstance(value, float):
        return 0 < value <= 1
    if isinstance(value, int) and not isinstance(value, bool):
        return value >= 1
    return True  # None, or a time ("00:01:00:00", a mapping): Lightning parses those


def _max_time(value: Any) -> bool:
    import re

    return not isinstance(value, str) or re.fullmatch(r"\d+:\d\d:\d\d:\d\d", value) is not None


def _power_of_two(value: Any) -> bool:
    return _number(value) and value >= 64 and int(value) == value and (int(value) & (int(value) - 1)) == 0


COUNT = at_least(1, words="an integer >= 1")
RANGES: tuple[tuple[str, Accepts], ...] = (
    ("trainer.max_steps", at_least(-1, words="-1 (no limit) or an integer >= 0")),
    ("trainer.max_epochs", at_least(-1, None, words="-1 (no limit), an integer >= 0 or null")),
    ("trainer.min_steps", at_least(0, None)),
    ("trainer.min_epochs", at_least(0, None)),
    ("trainer.num_nodes", COUNT),
    ("trainer.devices", Accepts(_devices, "'auto', -1 (all), a count >= 1, or a list of device indices")),
    ("trainer.accelerator", Accepts(lambda v: _registered("accelerator", v), "'auto', 'cpu', 'gpu', 'cuda', 'mps' or 'tpu'")),
    ("trainer.strategy", Accepts(lambda v: _registered("strategy", v), "'auto', 'ddp' or another Lightning strategy name")),
    ("trainer.limit_*_batches", Accepts(_batches, "a batch count >= 0, a fraction in [0, 1], or null")),
    ("trainer.overfit_batches", Accepts(_batches, "a batch count >= 0 or a fraction in [0, 1]")),
    ("trainer.val_check_interval", Accepts(_val_check_interval, "a step count >= 1, a fraction in (0, 1], a time or null")),
    ("trainer.num_sanity_val_steps", at_least(-1, None, words="-1 (all), an integer >= 0 or null")),
    ("trainer.log_every_n_steps", at_least(0, None)),
    ("trainer.accumulate_grad_batches", COUNT),
    ("trainer.gradient_clip_val", at_least(0, None)),
    ("trainer.gradient_clip_algorithm", Accepts(lambda v: v in (None, "norm", "value"), "'norm', 'value' or null")),
    ("trainer.fast_dev_run", Accepts(lambda v: isinstance(v, bool) or (isinstance(v, int) and v >= 0), "true, false or a batch count >= 0")),
    ("trainer.reload_dataloaders_every_n_epochs", at_least(0)),
    ("trainer.profiler", Accepts(lambda v: v in (None, "simple", "advanced", "pytorch", "xla"), "'simple', 'advanced', 'pytorch', 'xla' or null")),
    ("trainer.max_time", Accepts(_max_time, "a time 'DD:HH:MM:SS', a mapping (days, hours, ...) or null")),
    ("data.batch_size", COUNT),
    ("data.val_batch_size", at_least(1, None, words="an integer >= 1 or null")),
    ("data.num_workers", at_least(0)),
    ("data.image_size", Accepts(_power_of_two, "a power of two >= 64 (the generator's size)")),
    ("data.samples_per_epoch", at_least(1, None, words="an integer >= 1 or null")),
    ("data.samples_per_clip", COUNT),
    ("data.shuffle_buffer", COUNT),
    ("data.pool_size", COUNT),
    ("data.pending", COUNT),
    ("data.neutral_frames", COUNT),
    ("data.clip_frames", at_least(0, words="an integer >= 0 (0 = no frame clip)")),
    ("data.margin", at_least(0, words="a margin >= 0 (pixels)")),
    ("data.train_fraction", Accepts(lambda v: _number(v) and 0 < v <= 1, "a fraction in (0, 1]")),
    ("data.val_source", at_least(0, words="a frame index >= 0")),
    ("*lr", above(0)),
    ("*every_n_steps", at_least(0, words="an integer >= 0 (0 = never)")),
    ("*.r1_every", COUNT),
    ("*.loss.*", at_least(0, words="a loss weight >= 0")),
    ("model.warp.roll", at_least(0, words="an amplitude >= 0 (0 = no warp along it)")),
    ("model.warp.scale", at_least(0, words="an amplitude >= 0 (0 = no warp along it)")),
    ("model.warp.shift", at_least(0, words="an amplitude >= 0 (0 = no warp along it)")),
    ("model.leak_ridge", above(0)),
    ("model.mouth_subspace", Accepts(lambda v: v is None or (_number(v) and 0 < v <= 1), "a fraction of variance in (0, 1], or null (off)")),
    ("model.subspace_batches", COUNT),
    ("model.subspace", Accepts(lambda v: v is None or (_number(v) and 0 < v <= 1), "a fraction of variance in (0, 1], or null (off)")),
    ("*.r1_weight", at_least(0, words="a loss weight >= 0")),
    ("*.samples_num", at_least(0)),
    ("*.ema_decay", fraction()),
    ("*.label_smoothing", fraction()),
    ("*.dropout", fraction()),
    ("*.modality_mask", fraction()),
    ("*.weight_decay", at_least(0)),
    ("*.clip_grad_norm", above(0, None)),
    ("*width", above(0)),
    ("*channel_multiplier", above(0)),
    ("*.crop_scale", above(0)),
    ("*.min_shift", at_least(0)),
    ("model.augment", at_least(0, words="a jitter strength >= 0 (0 = none)")),
    ("model.val_windows", COUNT),
    ("*.text_dim", at_least(0, words="an integer >= 0 (0 = no text features)")),
    ("*_dim", COUNT),
    ("*.dim", COUNT),
    ("*max_channels", COUNT),
    ("*hidden", COUNT),
    ("*.num_classes", COUNT),
    ("*.num_emotions", COUNT),
    ("*.context_layers", at_least(0)),
    ("*.latent_stride", COUNT),
    ("*.input_size", COUNT),
    ("*.exp_anchor", at_least(0, words="an anchor length >= 0 (0 = no anchors)")),
    ("*.network.anchor", at_least(0, words="an anchor length >= 0 (0 = the regression head)")),
    ("*.exp_init_batches", COUNT),
)  # fmt: skip
# Numeric keys that take any value (tests/faults/test_config_keys.py: every numeric key is here or in RANGES).
UNBOUNDED: dict[str, str] = {
    "*.flow_init_gain": "a scale of the flow head's initial weights; any sign works",
    "generator.size": "GeneratorConfig checks it (a power of two >= 64)",
    "data.seed": "any integer",
}


def value_rule(key: str) -> Accepts | None:
    """The first `RANGES` rule whose pattern matches the full key (None: the type is all that is checked)."""
    from fnmatch import fnmatchcase

    return next((rule for pattern, rule in RANGES if fnmatchcase(key, pattern)), None)
