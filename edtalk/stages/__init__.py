"""Training stages: one LightningModule per stage, resolved by name or by `module:Class` path.

Every stage is an `edtalk.stages.stage.EDTalkStage` (through `GANStage`, `edtalk.stages.base`, or
`SupervisedStage`, `edtalk.stages.supervised`) and exposes `Config` (the typed dataclass of its
`model:` section), `build(cfg, resume=False)` (instantiate from a composed run config, injecting its
networks made by `edtalk.stages.builders`) and `prepare_debug(cfg, debug_export)` (what a `--debug`
run needs first; the training entry point runs it). One registry entry per stage, keyed by the
class's `stage_name` (the name written into its checkpoints).

`finetune` stays a stage of its own (a `ReconstructStage` subclass with no code but its name): the
name is written into its checkpoints, where `edtalk.weights.handoff.init_generator` reads it (fresh
mouth/pose heads only from `reconstruct` checkpoints), and it starts from a checkpoint by design
(no "from scratch" warning).
"""

from __future__ import annotations

import importlib
from typing import Any

STAGES: dict[str, str] = {
    "reconstruct": "edtalk.stages.reconstruct:ReconstructStage",
    "mouth_pose": "edtalk.stages.mouth_pose:MouthPoseStage",
    "expression": "edtalk.stages.expression:ExpressionStage",
    "finetune": "edtalk.stages.finetune:FinetuneStage",
    "syncnet": "edtalk.stages.syncnet:SyncNetStage",
    "audio2mouth": "edtalk.stages.audio2mouth:Audio2MouthStage",
    "audio2pose": "edtalk.stages.audio2pose:Audio2PoseStage",
    "audio2exp": "edtalk.stages.audio2exp:Audio2ExpStage",
    "emotion_classifier": "edtalk.stages.emotion_classifier:EmotionClassifierStage",
}


def stage_class(name: str) -> Any:
    """The stage class for a registered name (`STAGES`) or an import path `package.module:Class`."""
    target = STAGES.get(name, name)
    if ":" not in target:
        raise ValueError(f"unknown stage {name!r}; known: {sorted(STAGES)} (or give 'package.module:Class')")
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ModuleNotFoundError, AttributeError) as err:
        raise ValueError(f"stage {name!r} -> {target} cannot be imported: {err}") from err
