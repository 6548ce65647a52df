"""Frozen judge networks: used only to score results, never trained here, never in train mode.

| module               | judge                                                        | scores     |
|----------------------|--------------------------------------------------------------|------------|
| `syncnet_v2`         | `SyncNetV2`, syncnet_python's `S`                            | LSE-D/C    |
| `inception_fid`      | `InceptionFID`, torch-fidelity's FID InceptionV3             | FID        |
| `lpips_alex`         | `LPIPSAlex`, LPIPS v0.1 with an AlexNet trunk                | LPIPS      |
| `arcface`            | `ArcFace`, arcface_torch iResNet (optional)                  | CSIM       |
| `dlib_face`          | `DlibFace`, dlib detector, landmarks, embedding (ships)      | CSIM, LMD  |
| `emotion_fan`        | `EmotionFAN`, EAT's emotion judge                            | Acc_emo    |
| `inception_imagenet` | `InceptionImageNet`, EAT's FID network                       | FID (EAT)  |
| `emotion_classifier` | loader of our trained `edtalk.nn.emotion` classifier         | emotion_acc|
| `crops`              | `arcface_crops`, `resize_frames`: input preparation          |            |
| `files`              | `JUDGE_FILES`: the one table of judge files (name, use, where to get it, option, loader) |

Judge networks derive from `FrozenJudge` (or override `train()` the same way). Their files load through
`edtalk.weights` (the only `torch.load`); importing this package registers their weight kinds
(`syncnet_v2`, `alexnet`, `arcface`, `emotion_fan`, `inception_v3_imagenet`) with `edtalk.weights`, so
`edtalk weights inspect FILE --kind KIND` knows them (the command imports this package). `edtalk.weights`
never imports `metrics`: the arrow points down.
"""

from __future__ import annotations

from edtalk.weights.registry import register
from metrics.judges import arcface, emotion_fan, inception_imagenet, lpips_alex, syncnet_v2
from metrics.judges.arcface import ARCFACE_DEPTHS, ArcFace
from metrics.judges.base import FrozenJudge, JudgeWeightsMissing, require_file
from metrics.judges.crops import ARCFACE_TEMPLATE, arcface_crops, resize_frames
from metrics.judges.dlib_face import DlibFace, dlib_model_file
from metrics.judges.emotion_classifier import load_emotion_classifier
from metrics.judges.emotion_fan import EMOTION_FAN_LABELS, EmotionFAN, load_emotion_fan
from metrics.judges.files import JUDGE_FILES, JudgeFile, judge_file, weight_entries, weights_dir, where
from metrics.judges.inception_fid import InceptionFID
from metrics.judges.inception_imagenet import InceptionImageNet
from metrics.judges.lpips_alex import LPIPSAlex, lpips_linear_file
from metrics.judges.syncnet_v2 import SyncNetV2

KINDS = (syncnet_v2.KIND, arcface.KIND, lpips_alex.KIND, emotion_fan.KIND, inception_imagenet.KIND)
for _kind in KINDS:
    register(_kind)

__all__ = [
    "ARCFACE_DEPTHS",
    "ARCFACE_TEMPLATE",
    "EMOTION_FAN_LABELS",
    "JUDGE_FILES",
    "KINDS",
    "ArcFace",
    "DlibFace",
    "EmotionFAN",
    "FrozenJudge",
    "InceptionFID",
    "InceptionImageNet",
    "JudgeFile",
    "JudgeWeightsMissing",
    "LPIPSAlex",
    "SyncNetV2",
    "arcface_crops",
    "dlib_model_file",
    "judge_file",
    "load_emotion_classifier",
    "load_emotion_fan",
    "lpips_linear_file",
    "require_file",
    "resize_frames",
    "weight_entries",
    "weights_dir",
    "where",
]
