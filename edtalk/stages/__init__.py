"""Training stages: one LightningModule per stage, resolved by name or by `module:Class` path.

A stage class exposes `Config` (the typed dataclass of its `model:` section) and
`build(cfg, resume=False)` (instantiate from a composed run config, injecting its networks).
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
