"""Every shipped experiment composes and builds: experiments/*.yaml, plain, with `--debug`, and with the
quickstart's demo profile (experiments/demo/<stage>.yaml over `--debug`), through `edtalk.train.compose`
(what `edtalk fit` runs), then the stage's LightningModule and the DataModule are built as `fit` builds
them (no Trainer, no data read: `data.root` points at a folder that does not exist).

Also: the typed sections come from their dataclasses (`edtalk.config.compose_base`), `debug.yaml` is
`GeneratorConfig.tiny()`, and `model.width` follows `generator.channel_multiplier` from one place.
"""

from __future__ import annotations

import dataclasses
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
from omegaconf import DictConfig, OmegaConf

from edtalk import weights
from edtalk.apps.quickstart import profile_overrides
from edtalk.cli import main
from edtalk.config import (
    ConfigError,
    DiscriminatorConfig,
    FaultsConfig,
    GeneratorConfig,
    Variant,
    section_defaults,
)
from edtalk.nn.generator import Generator
from edtalk.nn.syncnet import SyncNet
from edtalk.stages import stage_class
from edtalk.stages.base import GANStage
from edtalk.train import EXPERIMENTS, build_datamodule, compose, prepare_generator_config, start_point

NAMES = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml") if p.stem not in ("defaults", "debug"))
DEMO = sorted(p.stem for p in (EXPERIMENTS / "demo").glob("*.yaml"))
MODES = ("plain", "debug", "demo")
CASES = [(n, m) for n in NAMES for m in MODES if m != "demo" or n in DEMO]
# Experiments that need a generator file (`init_from`) to build: a random-init one of the composed config.
NEEDS_GENERATOR_FILE = ("finetune", "audio2mouth")
SUPERVISED = ("syncnet", "audio2mouth", "audio2pose", "audio2exp", "audio2exp_hubert", "emotion_classifier")

WeightFile = Callable[[str, Any], Path]
SYNCNET_CHANNELS = {"plain": (32, 64, 128, 256, 512), "debug": (4, 8, 16, 32, 64), "demo": (4, 8, 16, 32, 64)}


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Building only: one intra-op thread (`one_thread` in tests/conftest.py)."""


@pytest.fixture(scope="module")
def weight_file(tmp_path_factory: pytest.TempPathFactory) -> WeightFile:
    """A random-init weight file in our format: ("generator", GeneratorConfig) or ("syncnet", channels),
    written once per kind and config."""
    root = tmp_path_factory.mktemp("weights")
    files: dict[tuple[str, Any], Path] = {}

    def get(kind: str, config: Any) -> Path:
        if (kind, config) not in files:
            module = Generator(config) if kind == "generator" else SyncNet(config)
            path = root / f"{kind}_{len(files)}.pt"
            files[kind, config] = weights.save_checkpoint(module, kind, path)
        return files[kind, config]

    return get


def compose_mode(name: str, mode: str, extra: list[str] | None = None) -> DictConfig:
    """`edtalk fit NAME` (plain), `--debug`, or the quickstart's demo profile (over `--debug`)."""
    overrides = profile_overrides(name, "demo") if mode == "demo" else []
    return compose(name, [*overrides, *(extra or [])], debug=mode != "plain")


def compose_buildable(name: str, mode: str, weight_file: WeightFile, tmp_path: Path) -> DictConfig:
    """The composed config plus what the experiment leaves to the user: a generator file of its own
    generator config, a lip-sync expert file, a random VGG at plain size (no VGG weights ship) and a
    data root that does not exist."""
    extra = [f"data.root={tmp_path / 'no_shards'}"]
    if start_point(name)[1] and name not in NEEDS_GENERATOR_FILE:
        extra.append("init_from=null")  # a declared start point (`init_from: ???`): build from scratch here
    cfg = compose_mode(name, mode, ["init_from=x.pt", *extra])
    if name in NEEDS_GENERATOR_FILE:
        gen = GeneratorConfig.from_dict(_section(cfg, "generator"))
        extra.append(f"init_from={weight_file('generator', gen)}")
    if cfg.model.get("loss", {}).get("sync", 0) > 0 and "syncnet" in cfg.model and not cfg.model.syncnet:
        extra.append(f"model.syncnet={weight_file('syncnet', SYNCNET_CHANNELS[mode])}")
    if mode == "plain" and "perceptual" in cfg.model:
        extra.append("model.perceptual.init=random")
    return compose_mode(name, mode, extra)


def build(cfg: DictConfig) -> tuple[L.LightningModule, L.LightningDataModule]:
    """The stage and DataModule exactly as `edtalk.train.fit` builds them (before the Trainer)."""
    prepare_generator_config(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "trains from scratch" warnings: no init files here
        module = stage_class(str(cfg.stage)).build(cfg)
    return module, build_datamodule(cfg)


def n_params(module: L.LightningModule) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("name", "mode"), CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_experiment_composes_and_builds(
    name: str, mode: str, weight_file: WeightFile, tmp_path: Path
) -> None:
    cfg = compose_buildable(name, mode, weight_file, tmp_path)
    module, data = build(cfg)
    assert type(module) is stage_class(str(cfg.stage)) and isinstance(module, L.LightningModule)
    gen = getattr(module, "generator", None)
    if gen is not None:  # the generator the config names (ablation switches aside)
        built = dataclasses.asdict(gen.cfg)
        for key in ("size", "variant", "style_dim", "channel_multiplier", "max_channels", "eem_hidden"):
            assert built[key] == cfg.generator[key], (key, built[key], cfg.generator[key])
    if isinstance(module, GANStage):
        assert (module.discriminator is not None) == bool(cfg.discriminator.enabled)
    assert type(data).__name__ == str(cfg.data.module).rpartition(".")[2]
    assert (data.image_size, data.batch_size) == (cfg.generator.size, cfg.data.batch_size)  # type: ignore[attr-defined]
    assert not (tmp_path / "no_shards").exists(), "building a DataModule must not touch its data"
    if mode == "debug":  # the tiny smoke-test model (measured: at most 0.27M; paper-size 1.9M-79M)
        assert n_params(module) < 1_000_000


@pytest.mark.parametrize("name", NAMES)
def test_sections_come_from_the_dataclasses(name: str) -> None:
    """Plain: the dataclasses' defaults (the experiment changes at most the variant); `--debug`:
    exactly `GeneratorConfig.tiny(variant)` and `DiscriminatorConfig.tiny()`."""
    extra = ["init_from=x.pt"] if name == "finetune" else []
    plain, debug = compose(name, extra), compose(name, extra, debug=True)
    variant: Variant = plain.generator.variant
    assert _section(plain, "generator") == GeneratorConfig(variant=variant).to_dict()
    assert _section(plain, "discriminator") == DiscriminatorConfig().to_dict()
    assert _section(plain, "faults") == dataclasses.asdict(FaultsConfig())
    assert _section(debug, "generator") == GeneratorConfig.tiny(variant).to_dict()
    assert _section(debug, "discriminator") == DiscriminatorConfig.tiny().to_dict()


def _section(cfg: DictConfig, name: str) -> dict:
    out = OmegaConf.to_container(cfg[name], resolve=True)
    assert isinstance(out, dict)
    return out


@pytest.mark.parametrize("name", SUPERVISED)
def test_model_width_follows_the_generator(name: str) -> None:
    assert compose(name).model.width == 1.0
    assert compose(name, debug=True).model.width == 0.125
    assert compose(name, ["generator.channel_multiplier=0.5"]).model.width == 0.5
    assert compose(name, ["generator.channel_multiplier=0.5", "model.width=2.0"]).model.width == 2.0
    if name in DEMO:
        assert compose_mode(name, "demo").model.width == 0.25


def test_width_links_cover_the_supervised_stages() -> None:
    """The experiments whose `model:` has a `width` are the supervised ones tested above."""
    has_width = [n for n in NAMES if "width" in compose(n, ["init_from=x.pt"]).model]
    assert sorted(has_width) == sorted(SUPERVISED)
    for path in EXPERIMENTS.glob("*.yaml"):
        assert "${generator.channel_multiplier}" not in path.read_text(), (
            f"{path}: the link is compose_base's"
        )


def test_print_config_shows_every_field_resolved(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "syncnet", "--print-config"]) == 0
    out = OmegaConf.create(capsys.readouterr().out)
    assert dict(out.generator) == GeneratorConfig().to_dict() and out.model.width == 1.0
    assert main(["fit", "audio2pose", "--debug", "--print-config", "generator.channel_multiplier=0.25"]) == 0
    out = OmegaConf.create(capsys.readouterr().out)
    assert out.model.width == 0.25 and out.generator.variant == "lip_pose" and out.generator.size == 64


def test_unknown_key_under_a_typed_section_of_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = tmp_path / "experiments"
    shutil.copytree(EXPERIMENTS, exp)
    text = (exp / "defaults.yaml").read_text()
    (exp / "defaults.yaml").write_text(text.replace("generator: {}", "generator: {sise: 64}"))
    monkeypatch.setenv("EDTALK_EXPERIMENTS", str(exp))
    with pytest.raises(ConfigError, match=r"unknown config key 'generator\.sise' \(did you mean 'size'\?\)"):
        compose("reconstruct")
    (exp / "defaults.yaml").write_text(text.replace("generator: {}", "generator: {size: 128}"))
    assert compose("reconstruct").generator.size == 128 == compose("reconstruct").data.image_size


def test_section_defaults_are_the_dataclass_fields() -> None:
    for cls in (GeneratorConfig, DiscriminatorConfig):
        section = section_defaults(cls)
        assert list(section) == [f.name for f in dataclasses.fields(cls)]
        assert cls.from_dict(section) == cls()
