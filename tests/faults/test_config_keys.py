"""Every config key reachable from the experiments, given bad values through `edtalk fit`.

Keys come from where the run config's types do: the typed sections' dataclasses (`edtalk.config.SECTIONS`),
each stage's `Config` dataclass (`model.*`), `lightning.Trainer`'s signature (`trainer.*`) and each DataModule's
signature (`data.*`). A value of the wrong type, or outside what `edtalk.config.RANGES` accepts, must end with
exit status 2 and one line naming the key, the value and what is accepted, before any run folder exists.
The CLI runs in-process (`edtalk.cli.main` with `--print-config`, which never trains); hypothesis draws values.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from edtalk import config
from edtalk.cli import main
from edtalk.train import EXPERIMENTS, TRAINER_SET_BY_FIT, _accepted_kwargs, _import, compose

SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def experiment_per_stage() -> dict[str, str]:
    """One experiment of each stage (the first by name)."""
    out: dict[str, str] = {}
    for path in sorted(EXPERIMENTS.glob("*.yaml")):
        stage = OmegaConf.load(path).get("stage")
        if isinstance(stage, str) and stage != "???" and path.stem not in ("defaults", "debug"):
            out.setdefault(stage, path.stem)
    return out


def _fields(cls: Any, prefix: str) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        nested = [a for a in config._arms(hints[f.name]) if dataclasses.is_dataclass(a)]
        if f.init and nested:
            out |= _fields(nested[0], f"{prefix}.{f.name}")
        elif f.init:
            out[f"{prefix}.{f.name}"] = hints[f.name]
    return out


def _signature(fn: Any, prefix: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    hints = config._hints_of(fn)
    params = inspect.signature(fn).parameters
    return {
        f"{prefix}.{n}": hints.get(n, Any)
        for n, p in params.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n not in skip
    }


@cache
def keys_of(experiment: str) -> dict[str, Any]:
    """Every key of the experiment's config that has a type, with its annotation."""
    import lightning as L

    from edtalk.stages import stage_class

    cfg = compose(experiment, ["data.root=/nonexistent"])
    keys: dict[str, Any] = {}
    for name, cls in config.SECTIONS.items():
        keys |= _fields(cls, name)
    keys |= _fields(stage_class(str(cfg.stage)).Config, "model")
    keys |= _signature(L.Trainer, "trainer", (*TRAINER_SET_BY_FIT, "logger", "callbacks", "plugins"))
    module = _import(str(cfg.data.module))
    accepted = _accepted_kwargs(module) or set()
    keys |= {k: v for k, v in _signature(module, "data").items() if k.split(".", 1)[1] in accepted}
    sampler = getattr(module, "sampler_class", None)
    if sampler is not None and dataclasses.is_dataclass(sampler):
        keys |= {k: v for k, v in _fields(sampler, "data").items() if k not in keys}
    # the config lists the keys a command line may set (struct mode): a Trainer or DataModule argument that
    # experiments/defaults.yaml does not list is an unknown key there, which test_wrong_type covers
    present = {k: v for k, v in keys.items() if OmegaConf.select(cfg, k, default=_ABSENT) is not _ABSENT}
    return present


_ABSENT = object()


STAGES = experiment_per_stage()
ALL: dict[str, tuple[str, Any]] = {}  # key -> (an experiment that has it, annotation)
for _experiment in STAGES.values():
    for _key, _tp in keys_of(_experiment).items():
        ALL.setdefault(_key, (_experiment, _tp))
NUMERIC = sorted(k for k, (_, tp) in ALL.items() if {int, float} & set(config._arms(tp)))
RULED = sorted(k for k in ALL if config.value_rule(k) is not None)


def fit_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, experiment: str, *overrides: str) -> str:
    """`edtalk fit EXPERIMENT OVERRIDES --print-config`: exit 2 and the one error line (nothing written)."""
    status = main(["fit", experiment, f"run.root={tmp_path / 'runs'}", *overrides, "--print-config"])
    err = capsys.readouterr().err.strip()
    assert status == 2, f"{overrides} was accepted"
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("edtalk fit: error: "), err
    assert not (tmp_path / "runs").exists()
    return lines[0]


# -- the catalogue covers every key ----------------------------------------------------------------------
def test_every_numeric_key_has_a_range_or_is_unbounded() -> None:
    """A new int/float key needs a `RANGES` rule (what it accepts) or an `UNBOUNDED` entry (why any value)."""
    free = [k for k in NUMERIC if config.value_rule(k) is None]
    unlisted = [k for k in free if not any(fnmatchcase(k, p) for p in config.UNBOUNDED)]
    assert not unlisted, f"add to edtalk.config.RANGES or UNBOUNDED: {unlisted}"
    assert len(NUMERIC) > 60 and any(k.startswith("trainer.") for k in RULED)  # the walk found the keys


@pytest.mark.parametrize("experiment", sorted(STAGES.values()))
def test_defaults_pass_their_rules(experiment: str) -> None:
    """Every rule accepts the value each experiment (and its --debug form) composes to."""
    for debug in (False, True):
        cfg = OmegaConf.to_container(compose(experiment, ["data.root=/x"], debug=debug), resolve=True)
        for key in keys_of(experiment):
            value = OmegaConf.select(OmegaConf.create(cfg), key, default="<absent>")
            rule = config.value_rule(key)
            if rule is not None and value not in ("<absent>", "???"):
                assert rule.test(value), f"{experiment}: {key}={value!r} refused by its own rule"


# -- wrong types ---------------------------------------------------------------------------------------------
def wrong_value(tp: Any) -> str | None:
    """A dotlist value that does not fit annotation `tp` (None: every value fits)."""
    for text in ("abc", "[1,2]", "{a: 1}"):
        value = OmegaConf.from_dotlist([f"x={text}"]).x
        value = OmegaConf.to_container(value) if not isinstance(value, str) else value
        if not config.fits(tp, value):
            return text
    return None


TYPED = sorted(k for k, (_, tp) in ALL.items() if wrong_value(tp) is not None)


@pytest.mark.parametrize("key", TYPED)
def test_wrong_type(key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    experiment, tp = ALL[key]
    line = fit_line(capsys, tmp_path, experiment, f"{key}={wrong_value(tp)}")
    assert key in line or key.rsplit(".", 1)[0] in line, line


# -- out-of-range values -------------------------------------------------------------------------------------
VALUES = (
    st.integers(-(10**9), 10**9)
    | st.floats(-1e9, 1e9, allow_nan=False)
    | st.text(st.characters(categories=["Ll"]), min_size=1, max_size=6)
)


@SETTINGS
@given(key=st.sampled_from(RULED), value=VALUES)
def test_out_of_range(key: str, value: Any, tmp_path_factory: pytest.TempPathFactory, capsys: Any) -> None:
    """Any well-typed value a rule refuses: negative steps, zero batch, lr <= 0, sizes that are not powers of
    two, unknown accelerators and strategies, fractions above 1 ..."""
    experiment, tp = ALL[key]
    text = repr(value) if not isinstance(value, str) else value
    parsed = OmegaConf.from_dotlist([f"x={text}"]).x
    rule = config.value_rule(key)
    assert rule is not None
    assume(config.fits(tp, parsed) and not rule.test(parsed))
    tmp = tmp_path_factory.mktemp("fit")
    line = fit_line(capsys, tmp, experiment, f"{key}={text}")
    # `model.*` is an omegaconf structured node: it may show the value converted (0 -> 0.0 for a float)
    assert line.startswith(f"edtalk fit: error: {key}=") and line.endswith(f": expected {rule.words}"), line


@pytest.mark.parametrize(
    "override",
    ["trainer.max_steps=-5", "data.batch_size=0", "data.batch_size=-3", "model.optim.g_lr=0", "model.optim.g_lr=-1e-3",
     "model.optim.g_betas=[0.9,1.0]", "generator.size=100", "data.image_size=96", "trainer.accelerator=quantum",
     "faults.on_nonfinite=maybe", "generator.variant=huge"],
)  # fmt: skip
def test_the_named_cases(override: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's list, each named: the key and the value are in the line."""
    key, value = override.split("=")
    line = fit_line(capsys, tmp_path, "reconstruct", override)
    assert key.rsplit(".", 1)[-1] in line and "expected" in line, line
    assert value.strip("[]").split(",")[-1] in line or float(value) == float(
        line.split("=")[1].split(":")[0]
    ), line


# -- the rules agree with Lightning ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "value"),
    [("max_steps", -5), ("max_epochs", -2), ("num_nodes", 0), ("devices", 0), ("accelerator", "quantum"),
     ("strategy", "nope"), ("limit_val_batches", 1.5), ("overfit_batches", -1), ("gradient_clip_algorithm", "x"),
     ("profiler", "x"), ("fast_dev_run", -1), ("reload_dataloaders_every_n_epochs", -1), ("max_time", "1h")],
)  # fmt: skip
def test_lightning_refuses_what_the_rules_refuse(key: str, value: Any) -> None:
    """Our rule refuses it while composing; Lightning would refuse it too, later, when the Trainer is built."""
    import lightning as L

    rule = config.value_rule(f"trainer.{key}")
    assert rule is not None and not rule.test(value)
    kwargs: dict[str, Any] = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    if key not in ("accelerator", "devices", "strategy"):
        kwargs |= {"accelerator": "cpu", "devices": 1}
    with pytest.raises((ValueError, Exception), match=key.split("_")[0] if key != "max_time" else "duration"):
        L.Trainer(**kwargs, **{key: value})


# -- nothing half-written ------------------------------------------------------------------------------------
def test_a_bad_value_fails_before_a_run_folder_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's first case, run for real (no --print-config): one line, exit 2, no run folder."""
    runs = tmp_path / "runs"
    assert main(["fit", "reconstruct", "trainer.max_steps=-5", "--debug", f"run.root={runs}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["edtalk fit: error: trainer.max_steps=-5: expected -1 (no limit) or an integer >= 0"]
    assert not runs.exists()
