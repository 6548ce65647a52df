"""Run configuration and Trainer construction for `edtalk fit`.

    cfg = compose("mouth_pose", ["trainer.max_steps=100", "data.root=/data/shards"])
    run_dir = fit(cfg)

Composition: `experiments/defaults.yaml` (infrastructure: run, trainer, logger, checkpoint, data, init)
with `generator`, `discriminator` and `faults` from their dataclasses' defaults and the stage's typed
`Config` dataclass as the `model:` section (`edtalk.config.compose_base`) +
`experiments/<experiment>.yaml` + (with `debug=True`) `experiments/debug.yaml` + CLI dotlist overrides.
Every level is in omegaconf struct mode, so an unknown key fails with its full name. The resolved
config is written to `<run_dir>/config.yaml` and into every checkpoint.

Runs live in `<run.root>/<experiment>/<run.name>/` (`run.name` defaults to a timestamp; `--debug`
uses `debug`): `config.yaml`, `checkpoints/{last,best}.ckpt`, `logs/version_N/metrics.csv` (one per
session), `wandb/`, `samples/`.
`ckpt_path=last` resumes this run's (or, without `run.name`, the newest run's) `last.ckpt` in place:
weights, optimisers, step, loop and callback state, RNG state, and the wandb run id.
"""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from edtalk import runs

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


# -- composition ---------------------------------------------------------------------------------------
def experiments_dir() -> Path:
    """Folder of the experiment YAML files (`EDTALK_EXPERIMENTS` overrides the checkout's `experiments/`)."""
    return Path(os.environ.get("EDTALK_EXPERIMENTS", EXPERIMENTS))


def experiment_file(name: str) -> Path:
    """`experiments/<name>.yaml`, or `name` itself when it is a path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    path = experiments_dir() / f"{name}.yaml"
    if not path.is_file():
        known = sorted(
            p.stem for p in experiments_dir().glob("*.yaml") if p.stem not in ("defaults", "debug")
        )
        raise FileNotFoundError(f"experiment {name!r} not found: no {path}; known experiments: {known}")
    return path


def _merge(base: DictConfig, other: Any, origin: str) -> DictConfig:
    try:
        merged = OmegaConf.merge(base, other)
    except ConfigKeyError as err:
        raise ValueError(f"unknown config key {err.full_key!r} in {origin}") from err
    except OmegaConfBaseException as err:
        raise ValueError(f"invalid config value in {origin}: {_omegaconf_line(err)}") from err
    assert isinstance(merged, DictConfig)
    return merged


def compose(experiment: str, overrides: list[str] | None = None, debug: bool = False) -> DictConfig:
    """The resolved run config of an experiment (see the module docstring for the layers)."""
    from edtalk.config import compose_base
    from edtalk.stages import stage_class

    exp_path = experiment_file(experiment)
    exp = OmegaConf.load(exp_path)
    if not isinstance(exp, DictConfig) or "stage" not in exp:
        raise ValueError(f"{exp_path} must name its stage (`stage: reconstruct`)")
    cls = stage_class(str(exp.stage))
    defaults = OmegaConf.load(experiments_dir() / "defaults.yaml")
    assert isinstance(defaults, DictConfig)
    base = compose_base(defaults, cls.Config, "experiments/defaults.yaml")  # typed sections + model links
    base.experiment = Path(experiment).stem
    OmegaConf.set_struct(base, True)
    with open_dict(base.data):  # DataModule kwargs are checked against its signature later
        cfg = _merge(base, exp, str(exp_path))
    if OmegaConf.is_missing(exp, "init_from"):
        # a merge keeps the default over `???`; a declared mandatory start point must stay missing
        cfg.init_from = "???"
    OmegaConf.set_struct(cfg, True)
    if debug:
        cfg = _merge(cfg, OmegaConf.load(experiments_dir() / "debug.yaml"), "experiments/debug.yaml")
    if overrides:
        try:
            dotlist = OmegaConf.from_dotlist(list(overrides))
        except OmegaConfBaseException as err:
            raise ValueError(f"cannot parse overrides {overrides}: {err}") from err
        cfg = _merge(cfg, dotlist, "command-line overrides")
    validate(cfg, cls)
    return cfg


def _omegaconf_line(err: OmegaConfBaseException) -> str:
    """One line from an omegaconf error: "model.r1_every='abc': Value 'abc' ... Integer" (no key/type block)."""
    msg = str(getattr(err, "msg", "") or err).splitlines()[0]
    key = getattr(err, "full_key", None)
    return f"{key}: {msg}" if key else msg


def validate(cfg: DictConfig, stage_cls: Any) -> None:
    """Check every typed section of a composed config before anything is built.

    `edtalk.config.SECTIONS` (generator, discriminator, faults: their dataclasses), `model` (the stage's
    Config), `data` (the DataModule's signature) and `trainer` (lightning.Trainer's signature): unknown
    keys, values of the wrong type and values the dataclass refuses (its `__post_init__`).

    Raises:
        ConfigError: one line naming the key, the value and what is expected.
    """
    from edtalk.config import SECTIONS, ConfigError, check_section

    for name, schema in SECTIONS.items():
        check_section(schema, _section(cfg, name), name)
    check_section(stage_cls.Config, _section(cfg, "model"), "model")
    trainer = _section(cfg, "trainer")
    for key in TRAINER_SET_BY_FIT:
        if key in trainer:
            raise ConfigError(f"trainer.{key} is set by `edtalk fit` itself; remove it from the config")
    check_section(L.Trainer, trainer, "trainer")
    data = _section(cfg, "data")
    module = data.pop("module", None)
    if not isinstance(module, str) or module == "???":
        raise ConfigError(
            f"data.module={module!r}: expected the DataModule's import path, e.g. datamodules.PairDataModule"
        )
    data_module_kwargs(_import(module), data)


# Trainer arguments `build_trainer` fills in (a config value would clash with them).
TRAINER_SET_BY_FIT = ("default_root_dir", "logger", "callbacks", "check_val_every_n_epoch")


def _section(cfg: DictConfig, name: str) -> dict[str, Any]:
    """A section as a plain resolved dict; a missing mandatory value (`???`) is left to the builders."""
    out = OmegaConf.to_container(cfg[name], resolve=True, throw_on_missing=False)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items() if v != "???"}


def plain(node: Any) -> dict[str, Any]:
    """A resolved config section as a plain dict."""
    out = OmegaConf.to_container(node, resolve=True)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


# -- start points --------------------------------------------------------------------------------------
def start_point(experiment: str) -> tuple[str | None, bool]:
    """(the experiment it continues from, whether that start point is mandatory), as its file declares them.

    `requires: NAME` names the experiment whose checkpoint it continues from; `init_from: ???` makes that
    start point mandatory for `edtalk fit` (`check_start_point`). The plan runner's stage graph is checked
    against this declaration.
    """
    exp = OmegaConf.load(experiment_file(experiment))
    if not isinstance(exp, DictConfig):
        return None, False
    requires = exp.get("requires", None)
    return (str(requires) if requires else None), OmegaConf.is_missing(exp, "init_from")


def start_chain(cfg: DictConfig) -> list[str]:
    """The declared stage chain of a composed config, newest first: "experiment (init_from=...)" each, e.g.
    ["expression (init_from=???)", "mouth_pose (init_from=???)", "reconstruct (init_from=None)"] (the earlier
    experiments as their files declare them; `start_point`)."""
    out = [f"{cfg.experiment} (init_from={_init_text(cfg)})"]
    name, seen = cfg.get("requires"), {str(cfg.experiment)}
    while name and str(name) not in seen and len(out) < 16:
        seen.add(str(name))
        exp = OmegaConf.load(experiment_file(str(name)))
        init = OmegaConf.select(exp, "init_from", default=None, throw_on_missing=False)
        out.append(f"{name} (init_from={'???' if OmegaConf.is_missing(exp, 'init_from') else init})")
        name = start_point(str(name))[0]
    return out


def _init_text(cfg: DictConfig) -> str:
    return "???" if OmegaConf.is_missing(cfg, "init_from") else str(cfg.init_from)


def check_start_point(cfg: DictConfig, resuming: bool) -> None:
    """Refuse to train a stage that continues from another (`init_from: ???`) without its checkpoint.

    A resumed run takes its weights from the checkpoint it resumes, so there `init_from` may stay unset.

    Raises:
        ConfigError: one line naming `init_from`, the stage it comes from and an example.
    """
    from edtalk.config import ConfigError

    if not OmegaConf.is_missing(cfg, "init_from"):
        return
    if resuming:
        cfg.init_from = None
        return
    prev = cfg.get("requires")
    source = f"the {prev} stage (requires: {prev})" if prev else "a trained generator"
    example = str(runs.checkpoint(runs.run_path("runs", prev, "<run>"))) if prev else "ckpts/EDTalk.pt"
    raise ConfigError(
        f"init_from is not set: experiment {cfg.experiment} continues from {source}; pass its checkpoint, "
        f"e.g. edtalk fit {cfg.experiment} init_from={example}"
    )


# -- run directories -----------------------------------------------------------------------------------
def runs_of(cfg: DictConfig) -> Path:
    return runs.experiment_runs(cfg.run.root, str(cfg.experiment))


def debug_dir(cfg: DictConfig) -> Path:
    """The `--debug` run directory of the experiment `cfg` describes."""
    return runs.debug_run(Path(cfg.run.root), str(cfg.experiment))


def resolve_run(cfg: DictConfig) -> tuple[Path, str | None]:
    """(run dir, checkpoint to resume or None); fills `run.name` and `ckpt_path` in `cfg`."""
    ckpt = cfg.ckpt_path
    if ckpt == "last":
        run_dir = _last_run(cfg)
        ckpt = str(runs.checkpoint(run_dir))
    elif ckpt:
        if not Path(ckpt).is_file():
            raise FileNotFoundError(f"ckpt_path {ckpt} does not exist")
        run_dir = runs.run_of_checkpoint(Path(ckpt)) or _new_run_dir(cfg)
    else:
        run_dir = _new_run_dir(cfg)
    cfg.run.name = run_dir.name
    cfg.ckpt_path = ckpt
    return run_dir, ckpt


def _new_run_dir(cfg: DictConfig) -> Path:
    name = cfg.run.name or datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return runs.run_path(cfg.run.root, str(cfg.experiment), str(name))


def _last_run(cfg: DictConfig) -> Path:
    if cfg.run.name:
        run_dir = runs.run_path(cfg.run.root, str(cfg.experiment), str(cfg.run.name))
        candidates = [run_dir] if runs.checkpoint(run_dir).is_file() else []
    else:
        candidates = runs.resumable(runs_of(cfg))
    if not candidates:
        where = runs.run_path(cfg.run.root, str(cfg.experiment), str(cfg.run.name or "*"))
        raise FileNotFoundError(f"ckpt_path=last: no {runs.checkpoint(where)} to resume; start a run first")
    return candidates[-1]


def fresh_run_check(run_dir: Path, resuming: bool, overwrite: bool) -> None:
    """Refuse to start a new run on top of an existing one's checkpoints (unless overwrite)."""
    ckpts = runs.checkpoint_dir(run_dir)
    if resuming or not ckpts.is_dir() or not any(ckpts.iterdir()):
        return
    if not overwrite:
        raise ValueError(
            f"{run_dir} already holds checkpoints; resume with ckpt_path=last run.name={run_dir.name}, "
            "or choose another run.name"
        )
    import shutil

    shutil.rmtree(run_dir)


# -- builders --------------------------------------------------------------------------------------------
def _import(target: str) -> Any:
    import importlib

    module, _, attr = target.replace(":", ".").rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ModuleNotFoundError, AttributeError) as err:
        raise ValueError(f"cannot import {target!r}: {err}") from err


def build_datamodule(cfg: DictConfig) -> Any:
    """The experiment's DataModule; `data.root: null` means the built-in dataset (built if missing)."""
    kwargs = plain(cfg.data)
    cls = _import(str(kwargs.pop("module")))
    data_module_kwargs(cls, kwargs)
    if kwargs.get("root") is None:
        from datamodules.synthetic import ensure_builtin

        kwargs["root"] = str(ensure_builtin())
    return cls(**kwargs)


def data_module_kwargs(cls: Any, kwargs: dict[str, Any]) -> None:
    """Check the `data:` kwargs against the DataModule's signature and annotations (and the fields of its
    `sampler_class` dataclass, where it forwards **kwargs there).

    Raises:
        ConfigError: one line naming the key, the value and what is expected.
    """
    from edtalk.config import ConfigError, check_section

    accepted = _accepted_kwargs(cls)
    unknown = sorted(set(kwargs) - accepted) if accepted is not None else []
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {['data.' + k for k in unknown]} for {cls.__name__}; it accepts {sorted(accepted or ())}"
        )
    check_section(cls, kwargs, "data")
    sampler = getattr(cls, "sampler_class", None)
    if sampler is not None and dataclasses.is_dataclass(sampler):
        own = set(inspect.signature(cls).parameters)
        extra = {k: v for k, v in kwargs.items() if k not in own}
        check_section(sampler, extra, "data", build=False)


def _accepted_kwargs(cls: Any) -> set[str] | None:
    """Keyword arguments a DataModule accepts: its signature, plus its `sampler_class` dataclass fields when it
    forwards **kwargs there (None: cannot tell)."""
    params = inspect.signature(cls).parameters
    names = {n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
    if len(names) == len(params):
        return names
    sampler = getattr(cls, "sampler_class", None)
    if sampler is not None and dataclasses.is_dataclass(sampler):
        return names | {f.name for f in dataclasses.fields(sampler) if f.init}
    return None


def prepare_generator_config(cfg: DictConfig) -> None:
    """`init.generator_config: checkpoint` copies the init file's GeneratorConfig into `cfg.generator`."""
    if cfg.init.generator_config == "checkpoint":
        if not cfg.init_from:
            raise ValueError("init.generator_config=checkpoint needs init_from=<generator checkpoint>")
        from edtalk.weights.handoff import generator_config_of

        cfg.generator = generator_config_of(cfg.init_from).to_dict()
    elif cfg.init.generator_config != "stage":
        raise ValueError(
            f"init.generator_config must be 'stage' or 'checkpoint', got {cfg.init.generator_config!r}"
        )


# -- world size: one rule for devices/num_nodes -> processes -> strategy ----------------------------------
def devices_per_node(cfg: DictConfig) -> int:
    """Processes per node that `trainer.devices` starts on this machine, resolved as Lightning resolves it:
    an int is that many (CPU processes or GPUs), a list or "0,1" string counts its entries, and `auto`
    (or -1) is every visible GPU when the accelerator may be a GPU, else 1."""
    t = cfg.trainer
    devices = t.devices
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    if not isinstance(devices, (int, str)):  # a list of device indices
        return len(list(devices))
    if str(devices) in ("auto", "-1"):
        return _visible_gpus() if str(t.accelerator) in ("auto", "gpu", "cuda") else 1
    return int(devices)


def _visible_gpus() -> int:
    import torch

    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def world_size(cfg: DictConfig) -> int:
    """Training processes in all: `devices_per_node` x `trainer.num_nodes`."""
    return devices_per_node(cfg) * int(cfg.trainer.num_nodes)


def _strategy(cfg: DictConfig) -> Any:
    """`trainer.strategy` auto or ddp: DDP (our settings) when `world_size(cfg)` > 1 or ddp is asked for,
    else a single process; any other strategy is passed to Lightning as written."""
    t = cfg.trainer
    if t.strategy not in ("ddp", "auto"):
        return t.strategy
    if t.strategy == "auto" and world_size(cfg) == 1:
        return "auto"
    from lightning.pytorch.strategies import DDPStrategy

    # D is toggled off during the G step (and G during the D step): those parameters get no gradient.
    # Buffers are not broadcast every step: the generator has no BatchNorm, and the lip-sync expert's
    # BatchNorm statistics stay rank-local (per-device batch, as the original's per-GPU runs; the checkpoint
    # holds rank 0's); trainer.sync_batchnorm=true computes them over the global batch instead.
    return DDPStrategy(find_unused_parameters=True, broadcast_buffers=False)


def learning_rates(cfg: DictConfig, world: int) -> tuple[dict[str, float], bool]:
    """({"model.optim.g_lr": value in force, ...}, scaled): the stage's learning rates after the DDP policy
    `model.optim.scale_lr_with_world_size` (lr x world size when on; `edtalk.stages.params.world_lr_scale`)."""
    optim = cfg.model.get("optim") if "model" in cfg else None
    if not isinstance(optim, DictConfig):
        return {}, False
    scaled = bool(optim.get("scale_lr_with_world_size", False))
    k = world if scaled else 1
    values = {str(name): v for name, v in optim.items()}
    lrs = {f"model.optim.{name}": float(v) * k for name, v in values.items() if name.endswith("lr")}
    return lrs, scaled


def steps_per_epoch(cfg: DictConfig, world: int) -> int | None:
    """Optimiser steps per epoch per rank when the data can tell without being read (None otherwise)."""
    from datamodules.modules import ShardDataModule

    kwargs = plain(cfg.data)
    cls = _import(str(kwargs.pop("module")))
    if not (isinstance(cls, type) and issubclass(cls, ShardDataModule)) or kwargs.get("root") is None:
        return None
    try:
        return int(cls(**kwargs).steps_per_epoch(world))
    except (FileNotFoundError, ValueError):
        return None


def run_summary(cfg: DictConfig) -> list[str]:
    """The multi-GPU semantics of a run, one fact per line (`edtalk fit` logs them; --print-config shows them
    as comments): world size and how it came about, batch per device and in all, learning rates in force,
    steps and epochs."""
    per_node, nodes = devices_per_node(cfg), int(cfg.trainer.num_nodes)
    world = per_node * nodes
    batch = int(cfg.data.batch_size)
    lrs, scaled = learning_rates(cfg, world)
    how = "scaled x world_size" if scaled else "not scaled"
    lr_text = " ".join(f"{k}={v:.6g}" for k, v in lrs.items()) or "(none)"
    per_epoch = steps_per_epoch(cfg, world)
    epoch_text = (
        f"{per_epoch} steps per epoch per rank"
        if per_epoch
        else "steps per epoch known once the data is read"
    )
    strategy = _strategy(cfg)
    return [
        f"world_size: {world} (trainer.num_nodes={nodes} x {per_node} per node from "
        f"trainer.devices={cfg.trainer.devices}, accelerator {cfg.trainer.accelerator}); "
        f"strategy: {strategy if isinstance(strategy, str) else type(strategy).__name__}",
        f"per_device_batch: {batch}; global_batch: {batch * world} (data.batch_size x world_size)",
        f"lr: {lr_text} ({how}: model.optim.scale_lr_with_world_size={str(scaled).lower()})",
        f"steps: trainer.max_steps={cfg.trainer.max_steps}, trainer.max_epochs={cfg.trainer.max_epochs}; "
        f"{epoch_text}",
    ]


def print_config(cfg: DictConfig) -> str:
    """`--print-config`: the resolved config, then the start-point chain and `run_summary` as YAML comments."""
    notes = [f"start point: {' <- '.join(start_chain(cfg))}", *run_summary(cfg)]
    return to_yaml(cfg) + "".join(f"# {line}\n" for line in notes)


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger

    loggers: list[Any] = []
    if cfg.logger.csv:
        # one version_N/metrics.csv per session: Lightning's CSV writer rewrites an existing file on resume
        loggers.append(CSVLogger(save_dir=str(run_dir), name=runs.LOGS))
    mode = os.environ.get("WANDB_MODE", cfg.logger.wandb_mode)
    if cfg.logger.wandb and mode != "disabled":
        loggers.append(_wandb_logger(cfg, run_dir, mode))
    return loggers


def _wandb_logger(cfg: DictConfig, run_dir: Path, mode: str) -> Any:
    from lightning.pytorch.loggers import WandbLogger

    id_file = runs.wandb_id_file(run_dir)
    if id_file.is_file():
        run_id = id_file.read_text().strip()  # resume the same wandb run
    else:
        import secrets

        run_id = secrets.token_hex(4)  # wandb run ids: 8 lower-case alphanumerics
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id)
    return WandbLogger(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        name=f"{cfg.experiment}/{run_dir.name}",
        save_dir=str(run_dir),
        id=run_id,
        resume="allow",
        offline=mode == "offline",
        tags=list(cfg.logger.tags),
    )


def build_callbacks(cfg: DictConfig, run_dir: Path) -> list[Any]:
    from lightning.pytorch.callbacks import ModelCheckpoint

    ckpt_dir = runs.checkpoint_dir(run_dir)
    c = cfg.checkpoint
    last = ModelCheckpoint(
        dirpath=ckpt_dir, save_last=True, save_top_k=0, every_n_train_steps=int(c.every_n_steps)
    )
    best = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor=c.monitor,
        mode=c.mode,
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    policy = str(cfg.faults.on_nonfinite) if "faults" in cfg else "stop"
    preemption = Preemption(runs.checkpoint(run_dir))
    return [
        NonFiniteGuard(policy, ckpt_dir),
        PairingFallbacks(),
        preemption,
        last,
        best,
        FinalCheckpoint(runs.checkpoint(run_dir), preemption),
    ]


class Preemption(Callback):
    """SIGTERM or SIGUSR1 (a cluster's pre-emption notice, e.g. SLURM `--signal=USR1@120`, or its time
    limit): at the end of the batch in progress write `last.ckpt` and stop, so that the requeued job resumes
    with `ckpt_path=last` at that step (docs/cluster.md). Rank 0's notice is broadcast, so every rank stops
    at the same step. The handlers are ours for the duration of the fit (Lightning's SLURM auto-requeue,
    which would write a separate hpc checkpoint, then stays out of the way) and restored afterwards."""

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.notice: str | None = None
        self.stopped = False  # the fit ended on a notice (FinalCheckpoint then keeps our mid-epoch file)
        self.signum = 0
        self._previous: dict[Any, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        import signal

        self.notice = signal.Signals(signum).name
        self.signum = signum

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for name in self.SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                self._previous[sig] = signal.signal(sig, self._handler)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        noticed = self.notice is not None
        if trainer.world_size > 1:
            noticed = bool(trainer.strategy.broadcast(noticed, src=0))
        if not noticed or trainer.should_stop:
            return
        trainer.save_checkpoint(self.path)
        from lightning.pytorch.utilities import rank_zero_info

        rank_zero_info(
            f"pre-emption ({self.notice or 'rank 0'}): wrote {self.path} at step {trainer.global_step}; "
            "stopping (resume with ckpt_path=last)"
        )
        trainer.should_stop = True
        self.stopped = True
        # Lightning's own SIGTERM flag would end the fit with a SystemExit instead of this orderly stop
        trainer._signal_connector.received_sigterm = False

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self.teardown(trainer, pl_module, "fit")


class PairingFallbacks(Callback):
    """Per epoch, summed over ranks: `data/pair_fallbacks`, the labelled targets paired within their own clip
    because no neutral frame of their speaker was available (the samples' "pair_fallback" flag), and
    `data/pair_targets`, the samples that carry the flag (stage 1 and the expression stage)."""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        flags = batch.get("pair_fallback") if isinstance(batch, dict) else None
        if flags is None:
            return
        opts: dict[str, Any] = {"on_step": False, "on_epoch": True, "reduce_fx": "sum", "sync_dist": True}
        pl_module.log("data/pair_fallbacks", flags.sum().float(), **opts)
        pl_module.log("data/pair_targets", float(flags.numel()), **opts)


class NonFiniteGuard(Callback):
    """A NaN or Inf loss (seen as non-finite gradients) before any optimiser step: `stop` ends training
    with an error naming the step, before the bad update and before any checkpoint is written (the
    last good `last.ckpt` stays as it was); `skip` drops that update (every gradient cleared, so Adam
    moves nothing) and records it (a warning naming the step, `train/nonfinite_skipped` logged)."""

    def __init__(self, policy: str, ckpt_dir: Path) -> None:
        if policy not in ("stop", "skip"):
            raise ValueError(f"faults.on_nonfinite must be 'stop' or 'skip', got {policy!r}")
        self.policy = policy
        self.ckpt_dir = Path(ckpt_dir)
        self.skipped = 0

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        bad = next((p for p in params if not bool(p.grad.isfinite().all())), None)
        if bad is None:
            return
        name = next((n for n, p in pl_module.named_parameters() if p is bad), "?")
        what = f"non-finite loss (NaN/Inf gradient of {name}) at step {trainer.global_step}"
        if self.policy == "stop":
            last = self.ckpt_dir / runs.LAST
            kept = f"last good checkpoint kept: {last}" if last.is_file() else "no checkpoint written yet"
            raise NonFiniteLossError(
                f"{what}; training stopped before this update ({kept}); "
                "faults.on_nonfinite=skip skips such steps instead"
            )
        for p in params:
            p.grad = None
        self.skipped += 1
        warnings.warn(
            f"{what}: update skipped (faults.on_nonfinite=skip; {self.skipped} so far)", stacklevel=1
        )
        pl_module.log("train/nonfinite_skipped", float(self.skipped), rank_zero_only=True)

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = int(state_dict.get("skipped", 0))


class NonFiniteLossError(ValueError):
    """Training met a NaN/Inf loss under `faults.on_nonfinite=stop` (the CLI turns it into exit code 2)."""


def build_trainer(cfg: DictConfig, run_dir: Path) -> L.Trainer:
    t = plain(cfg.trainer)
    t["strategy"] = _strategy(cfg)
    t["check_val_every_n_epoch"] = None  # validation every `val_check_interval` steps, across epochs
    return L.Trainer(
        default_root_dir=str(run_dir),
        logger=build_loggers(cfg, run_dir) or False,
        callbacks=build_callbacks(cfg, run_dir),
        **t,
    )


class FinalCheckpoint(Callback):
    """Write `last.ckpt` when training ends, whatever step that is (ModelCheckpoint saves every N steps), after
    the stage's `before_final_checkpoint`.

    Not after a pre-emption stop: `Preemption` wrote it inside the epoch, where a resume continues the
    epoch's data; written again here, after Lightning has closed the stopped epoch, a resume would start
    the next epoch instead."""

    def __init__(self, path: Path, preemption: Preemption | None = None) -> None:
        self.path = Path(path)
        self.preemption = preemption

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.preemption is not None and self.preemption.stopped:
            return
        finish = getattr(pl_module, "before_final_checkpoint", None)
        if callable(finish):
            finish()
        trainer.save_checkpoint(self.path)


# -- the command ----------------------------------------------------------------------------------------
def fit(cfg: DictConfig, overwrite: bool = False) -> Path:
    """Train the experiment described by `cfg`. Returns the run directory."""
    from edtalk.stages import stage_class

    run_dir, ckpt = resolve_run(cfg)
    check_start_point(cfg, resuming=ckpt is not None)
    fresh_run_check(run_dir, ckpt is not None, overwrite)
    prepare_generator_config(cfg)
    L.seed_everything(int(cfg.seed), workers=True)
    module = stage_class(str(cfg.stage)).build(cfg, resume=ckpt is not None)
    module.sample_dir = runs.samples_dir(run_dir)
    datamodule = build_datamodule(cfg)
    fresh = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    runs.config_file(run_dir).write_text(to_yaml(cfg))
    try:
        trainer = build_trainer(cfg, run_dir)
    except Exception:  # a value Lightning refuses (e.g. accelerator=gpu without one): leave no half-made run
        if fresh:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    from lightning.pytorch.utilities import rank_zero_info

    rank_zero_info(f"{cfg.experiment}: " + " | ".join(run_summary(cfg)))
    with warnings.catch_warnings():
        # by design: the stage's hook turns the DataModule's uint8 images into float on the device
        warnings.filterwarnings("ignore", message=r"You have overridden `on_after_batch_transfer`")
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
        finally:
            finish_wandb(trainer.loggers)
    stop_if_preempted(trainer)
    return run_dir


def stop_if_preempted(trainer: L.Trainer) -> None:
    """After a fit that `Preemption` stopped, end the process as the signal would have (exit status 128 +
    signal: 138 for SIGUSR1, 143 for SIGTERM), so that a job running several fits (a plan, a sweep) stops
    too instead of starting the next one; the checkpoint to resume from is written."""
    for callback in getattr(trainer, "callbacks", []):
        if isinstance(callback, Preemption) and callback.stopped:
            raise SystemExit(128 + (callback.signum or 15))


def finish_wandb(loggers: list[Any]) -> None:
    """Close the wandb run a fit started, so a second fit in the same process (sweeps, the main job,
    notebooks) starts or resumes its own run instead of WandbLogger silently reusing the open one."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger._experiment.finish()


def debug_dependency(cfg: DictConfig) -> None:
    """For `--debug`: make the earlier stage's debug checkpoint (if `requires`) and use it as init_from,
    then run what the stage declares it needs (`EDTalkStage.prepare_debug(cfg, debug_export)`: e.g.
    coefficient shards, another stage's export). Stages get `debug_export` passed in: they never
    import this module."""
    from edtalk.stages import stage_class

    _debug_requires(cfg)
    # a `module:Class` stage that is not an EDTalkStage may have no `prepare_debug`
    prepare = getattr(stage_class(str(cfg.stage)), "prepare_debug", None)
    if prepare is not None:
        prepare(cfg, debug_export)


def debug_export(experiment: str, cfg: Any) -> Path:
    """The export of another stage's `--debug` run under the same `run.root` (trained first if missing)."""
    prev = compose(experiment, [f"run.root={cfg.run.root}"], debug=True)
    path = runs.export_file(debug_dir(prev), experiment)
    if not path.is_file():
        debug_dependency(prev)
        fit(prev, overwrite=True)
    return path


def _debug_requires(cfg: DictConfig) -> None:
    if not cfg.requires or (not OmegaConf.is_missing(cfg, "init_from") and cfg.init_from):
        return
    prev = compose(str(cfg.requires), [f"run.root={cfg.run.root}"], debug=True)
    ckpt = runs.checkpoint(debug_dir(prev))
    if not _usable(ckpt, prev):
        debug_dependency(prev)
        fit(prev, overwrite=True)
    cfg.init_from = str(ckpt)


def _usable(ckpt: Path, cfg: DictConfig) -> bool:
    """A finished debug checkpoint whose generator matches what the config would build."""
    if not ckpt.is_file():
        return False
    from edtalk.weights import load_file

    obj = load_file(ckpt)
    stored = obj.get("edtalk", {}).get("generator")
    return bool(stored == OmegaConf.to_container(cfg.generator, resolve=True))
