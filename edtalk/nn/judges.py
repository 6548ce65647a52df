"""Frozen judge networks used only to score results (never trained here, never in train mode).

| judge           | class          | weights file (local)                                    | used by   |
|-----------------|----------------|---------------------------------------------------------|-----------|
| SyncNet v2 `S`  | `SyncNetV2`    | `syncnet_v2.model` (syncnet_python, state dict)         | LSE-D/C   |
| InceptionV3-FID | `InceptionFID` | `weights-inception-2015-12-05-6726825d.pth`             | FID       |
| LPIPS (AlexNet) | `LPIPSAlex`    | torchvision `alexnet-owt-7be5be79.pth` + lpips linears  | LPIPS     |
| ArcFace iResNet | `ArcFace`      | insightface arcface_torch `backbone.pth` (optional)     | CSIM      |
| dlib            | `DlibFace`     | ship in `face-recognition-models`                        | CSIM, LMD |

Every judge derives from `FrozenJudge`: parameters do not require grad and `train()` keeps eval mode,
so a Lightning loop or a careless `.train()` never updates batch-norm statistics.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class JudgeWeightsMissing(FileNotFoundError):
    """A judge's weight file is absent; the message names the file and where to get it."""


class FrozenJudge(nn.Module):
    """Base of all judges: eval mode forever, no gradients."""

    def freeze(self) -> FrozenJudge:
        self.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> FrozenJudge:
        return super().train(False)


def require_file(path: str | Path | None, what: str, where: str) -> Path:
    """`path` as a Path, or `JudgeWeightsMissing` naming the judge and where to get its file."""
    if path is None or not Path(path).is_file():
        raise JudgeWeightsMissing(f"{what} weights not found at {path}; get them from {where}")
    return Path(path)


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    from edtalk.weights import load_file

    state = load_file(path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return {k.removeprefix("module."): v for k, v in state.items()}


# -- SyncNet v2 (syncnet_python `SyncNetModel.S`) --------------------------------------------------
def _bn_relu(conv: nn.Module, ch: int, bn: type[nn.Module]) -> list[nn.Module]:
    return [conv, bn(ch), nn.ReLU(inplace=True)]


def _fc(out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, out_dim))


class SyncNetV2(FrozenJudge):
    """The `S` network of syncnet_python (Chung & Zisserman 2016), same module names as `syncnet_v2.model`.

    Audio: B x 1 x 13 x 20 MFCC windows (0.2 s) -> B x 1024. Lips: B x 3 x 5 x 224 x 224 BGR frames with
    raw 0..255 values (syncnet_python does not normalise) -> B x 1024.
    """

    def __init__(self, embed_dim: int = 1024) -> None:
        super().__init__()
        b2, b3 = nn.BatchNorm2d, nn.BatchNorm3d
        self.netcnnaud = nn.Sequential(
            *_bn_relu(nn.Conv2d(1, 64, 3, 1, 1), 64, b2),
            nn.MaxPool2d((1, 1), (1, 1)),
            *_bn_relu(nn.Conv2d(64, 192, 3, 1, 1), 192, b2),
            nn.MaxPool2d((3, 3), (1, 2)),
            *_bn_relu(nn.Conv2d(192, 384, 3, padding=1), 384, b2),
            *_bn_relu(nn.Conv2d(384, 256, 3, padding=1), 256, b2),
            *_bn_relu(nn.Conv2d(256, 256, 3, padding=1), 256, b2),
            nn.MaxPool2d((3, 3), (2, 2)),
            nn.Conv2d(256, 512, (5, 4)),
            nn.BatchNorm2d(512),
            nn.ReLU(),
        )
        self.netfcaud = _fc(embed_dim)
        self.netfclip = _fc(embed_dim)
        self.netcnnlip = nn.Sequential(
            *_bn_relu(nn.Conv3d(3, 96, (5, 7, 7), (1, 2, 2), 0), 96, b3),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_bn_relu(nn.Conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), 256, b3),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, b3),
            *_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, b3),
            *_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, b3),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_bn_relu(nn.Conv3d(256, 512, (1, 6, 6)), 512, b3),
        )
        self.freeze()

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        """mfcc: B x 1 x 13 x 20 -> B x 1024."""
        mid = self.netcnnaud(mfcc).flatten(1)  # -> B x 512
        return self.netfcaud(mid)

    def forward_lip(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: B x 3 x 5 x 224 x 224 (BGR, 0..255) -> B x 1024."""
        mid = self.netcnnlip(frames).flatten(1)  # -> B x 512
        return self.netfclip(mid)

    @classmethod
    def from_file(cls, path: str | Path | None) -> SyncNetV2:
        """Load syncnet_python's `syncnet_v2.model` (a state dict with these module names)."""
        from edtalk import weights

        path = require_file(path, "SyncNet v2 (LSE judge)", WHERE["syncnet_v2"])
        try:
            net = weights.load(path, "syncnet_v2")  # every key and shape checked
        except weights.CheckpointError as err:
            raise ValueError(f"{path} is not a syncnet_v2.model state dict: {err}") from err
        return cast(SyncNetV2, net).freeze()  # type: ignore[return-value]


# -- InceptionV3 for FID (torch-fidelity's port of the TF 2015-12-05 graph) -------------------------
class InceptionFID(FrozenJudge):
    """Pool features of the FID InceptionV3; input B x 3 x H x W in [-1, 1], output B x D float32.

    Wraps `torch_fidelity.FeatureExtractorInceptionV3` so the numbers match torch-fidelity/pytorch-fid
    exactly (uint8 quantisation, TF1-compatible bilinear resize to 299).
    """

    def __init__(self, path: str | Path | None, feature: str = "2048") -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = require_file(path, "InceptionV3-FID", WHERE["inception_fid"])
        self.feature = feature
        self.net = FeatureExtractorInceptionV3(
            "inception-v3-compat", [feature], feature_extractor_weights_path=str(path)
        )
        self.freeze()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # the one quantisation FID expects
        (feat,) = self.net(x)
        return feat


# -- LPIPS with an AlexNet trunk ------------------------------------------------------------------
LPIPS_TAPS = (1, 4, 7, 9, 11)  # ReLU outputs of torchvision AlexNet.features used by LPIPS
LPIPS_CHANNELS = (64, 192, 384, 256, 256)


class LPIPSAlex(FrozenJudge):
    """LPIPS v0.1 (Zhang et al. 2018), AlexNet trunk: distance B x 3 x H x W pairs in [-1, 1] -> B."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import alexnet

        self.features = alexnet(weights=None).features[: LPIPS_TAPS[-1] + 1]
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in LPIPS_CHANNELS)
        self.shift: torch.Tensor
        self.scale: torch.Tensor
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])
        self.freeze()

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised trunk activations at the five LPIPS layers."""
        x = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in LPIPS_TAPS:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        total = a.new_zeros(a.shape[0])
        for lin, fa, fb in zip(self.lins, self.taps(a), self.taps(b)):
            total = total + lin((fa - fb).pow(2)).mean(dim=(1, 2, 3))
        return total

    @classmethod
    def from_files(cls, alexnet_path: str | Path | None, lin_path: str | Path | None = None) -> LPIPSAlex:
        """Trunk from a torchvision AlexNet state dict; linear layers from `lpips`'s shipped `alex.pth`."""
        from edtalk import weights

        alexnet_path = require_file(alexnet_path, "AlexNet (LPIPS trunk)", WHERE["alexnet"])
        net = cast(LPIPSAlex, weights.load(alexnet_path, "alexnet"))  # the trunk; lins below
        lin_state = _load_state(Path(lin_path) if lin_path else lpips_linear_file())
        net.lins.load_state_dict(
            {k.replace("lin", "", 1).replace(".model.1", ""): v for k, v in lin_state.items()}
        )
        return net.freeze()  # type: ignore[return-value]


def lpips_linear_file() -> Path:
    """`lpips/weights/v0.1/alex.pth` inside the installed `lpips` package (ships with it)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise JudgeWeightsMissing(
            "the `lpips` package is not installed; pip install -c constraints.txt lpips"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / "alex.pth"


# -- ArcFace (insightface arcface_torch iResNet) ----------------------------------------------------
class _IBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


ARCFACE_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
# ArcFace's 5-point template for 112 x 112 crops (eye centres, nose tip, mouth corners).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float32,
)


class ArcFace(FrozenJudge):
    """iResNet-{18,34,50,100} of insightface's arcface_torch: B x 3 x 112 x 112 in [-1, 1] -> B x 512."""

    def __init__(self, layers: tuple[int, int, int, int] = ARCFACE_DEPTHS[100], embed_dim: int = 512) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        widths, cin = (64, 128, 256, 512), 64
        for i, (n, cout) in enumerate(zip(layers, widths)):
            blocks = [_IBlock(cin if j == 0 else cout, cout, 2 if j == 0 else 1) for j in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = cout
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.fc = nn.Linear(512 * 7 * 7, embed_dim)
        self.features = nn.BatchNorm1d(embed_dim, eps=1e-5)
        self.freeze()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.features(self.fc(self.bn2(x).flatten(1)))  # -> B x 512

    @classmethod
    def from_file(cls, path: str | Path | None) -> ArcFace:
        """Load an arcface_torch `backbone.pth`; the depth is read from the number of blocks in layer3."""
        from edtalk import weights

        path = require_file(path, "ArcFace (CSIM)", WHERE["arcface"])
        net = weights.load(path, "arcface")  # depth from the keys (`infer_arcface_config`), strict load
        return cast(ArcFace, net).freeze()  # type: ignore[return-value]


# -- dlib (ships in face-recognition-models) --------------------------------------------------------
def dlib_model_file(name: str) -> Path:
    """Path of a model inside the installed `face_recognition_models` package (without importing it)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise JudgeWeightsMissing(
            "face-recognition-models is not installed; pip install -c constraints.txt face-recognition-models"
        )
    return require_file(
        Path(next(iter(spec.submodule_search_locations))) / "models" / name, name, WHERE["dlib"]
    )


class DlibFace:
    """dlib frontal detector + 68/5-point shape predictors + the 128-d ResNet face embedding.

    Frames are RGB uint8 H x W x 3. When no face is found the previous frame's box is reused, and for the
    first frames the whole image (our clips are face crops); `misses` counts such frames.
    """

    def __init__(self) -> None:
        import dlib

        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape68 = dlib.shape_predictor(str(dlib_model_file("shape_predictor_68_face_landmarks.dat")))
        self.shape5 = dlib.shape_predictor(str(dlib_model_file("shape_predictor_5_face_landmarks.dat")))
        self._encoder: Any = None
        self.misses = 0

    def box(self, image: np.ndarray, previous: Any = None) -> Any:
        """Largest detected face (dlib.rectangle), else `previous`, else the whole image."""
        dets = self.detector(image, 0)  # faces >= 80 px (our crops); upsample once only when none is found
        if not len(dets):
            dets = self.detector(image, 1)
        if len(dets):
            return max(dets, key=lambda r: r.width() * r.height())
        self.misses += 1
        if previous is not None:
            return previous
        h, w = image.shape[:2]
        return self._dlib.rectangle(0, 0, w - 1, h - 1)

    def boxes(self, frames: np.ndarray) -> list[Any]:
        """One box per frame (T x H x W x 3 uint8), the previous box reused when detection fails."""
        out, rect = [], None
        for image in frames:
            rect = self.box(image, rect)
            out.append(rect)
        return out

    def landmarks(self, frames: np.ndarray, boxes: list[Any] | None = None) -> np.ndarray:
        """T x H x W x 3 uint8 -> T x 68 x 2 float32 pixel coordinates."""
        boxes = boxes if boxes is not None else self.boxes(frames)
        out = [[(p.x, p.y) for p in self.shape68(image, r).parts()] for image, r in zip(frames, boxes)]
        return np.asarray(out, np.float32).reshape(len(frames), 68, 2)

    def embeddings(self, frames: np.ndarray, boxes: list[Any] | None = None) -> np.ndarray:
        """T x H x W x 3 uint8 -> T x 128 float32 (dlib_face_recognition_resnet_model_v1)."""
        if self._encoder is None:
            path = dlib_model_file("dlib_face_recognition_resnet_model_v1.dat")
            self._encoder = self._dlib.face_recognition_model_v1(str(path))
        boxes = boxes if boxes is not None else self.boxes(frames)
        out = []
        for image, rect in zip(frames, boxes):
            shape = self.shape5(image, rect)
            out.append(np.asarray(self._encoder.compute_face_descriptor(image, shape), np.float32))
        return np.stack(out)


def arcface_crops(frames: np.ndarray, lmk68: np.ndarray) -> torch.Tensor:
    """Align faces to ArcFace's 112^2 template from 68-point landmarks -> T x 3 x 112 x 112 in [-1, 1]."""
    from skimage.transform import SimilarityTransform, warp

    crops = []
    for image, pts in zip(frames, lmk68):
        five = np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]])
        tf = SimilarityTransform.from_estimate(ARCFACE_TEMPLATE, five)
        crops.append(warp(image, tf, output_shape=(112, 112), order=1, preserve_range=True))
    arr = torch.from_numpy(np.stack(crops).astype(np.float32))  # -> T x 112 x 112 x 3 in 0..255
    return arr.permute(0, 3, 1, 2) / 127.5 - 1.0


WHERE: dict[str, str] = {
    "syncnet_v2": "syncnet_python's download_model.sh: "
    "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
    "inception_fid": "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth (same weights as pytorch-fid)",
    "alexnet": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth (torchvision AlexNet)",
    "arcface": "insightface arcface_torch model zoo (e.g. ms1mv3_arcface_r100_fp16/backbone.pth)",
    "dlib": "pip install -c constraints.txt face-recognition-models dlib-bin",
    "emotion_classifier": "train it: `edtalk fit emotion_classifier` (our checkpoint format)",
}


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """B x C x H x W -> B x C x size x size (bilinear, antialiased when shrinking)."""
    if frames.shape[-1] == size and frames.shape[-2] == size:
        return frames
    return F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
