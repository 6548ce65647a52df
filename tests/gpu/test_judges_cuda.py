"""The evaluation judges and metrics on CUDA give the CPU's numbers (random weights, float32 without TF32)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from edtalk.nn.emotion import EmotionClassifier, EmotionClassifierConfig
from metrics.fid import FID
from metrics.image import LPIPS, PSNR, SSIM
from metrics.judges import ArcFace, InceptionFID, LPIPSAlex, SyncNetV2
from metrics.sync import LSE
from tests.gpu.common import needs_cuda

pytestmark = [pytest.mark.gpu, needs_cuda]


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight FID InceptionV3 state dict in torch-fidelity's layout (2048-d pool features)."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    path = tmp_path_factory.mktemp("inception") / "inception-random.pth"
    with pytest.MonkeyPatch.context() as mp:  # build the architecture without its download
        mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        torch.manual_seed(3)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(net.state_dict(), path)
    return path


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """n x 3 x size x size smooth random images in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-12))


# judge -> (builder from the Inception file, method, inputs made on the CPU)
CASES: dict[str, tuple[Callable[[Path], torch.nn.Module], str, Callable[[], tuple[torch.Tensor, ...]]]] = {
    "syncnet_lip": (
        lambda _: SyncNetV2(),
        "forward_lip",
        lambda: (_images(10, 224).view(2, 3, 5, 224, 224) * 127.5,),
    ),
    "syncnet_audio": (lambda _: SyncNetV2(), "forward_aud", lambda: (torch.randn(4, 1, 13, 20),)),
    "inception": (InceptionFID, "forward", lambda: (_images(4, 256),)),
    "lpips": (lambda _: LPIPSAlex(), "forward", lambda: (_images(4, 256), _images(4, 256, seed=1))),
    "arcface": (lambda _: ArcFace(), "forward", lambda: (_images(4, 112),)),
    "emotion": (
        lambda _: EmotionClassifier(EmotionClassifierConfig()),
        "forward",
        lambda: (_images(6, 128).view(2, 3, 3, 128, 128),),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_judge_on_cuda_matches_cpu(name: str, inception_file: Path) -> None:
    build, method, make_inputs = CASES[name]
    torch.manual_seed(0)
    net = build(inception_file).eval()
    inputs = make_inputs()
    with torch.no_grad():
        ref = getattr(net, method)(*inputs)
        out = getattr(copy.deepcopy(net).cuda(), method)(*(x.cuda() for x in inputs))
    assert out.is_cuda and out.shape == ref.shape
    assert _rel(out.cpu(), ref) < 1e-4, _rel(out.cpu(), ref)


def _metric_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    pred = _images(12, 64)
    return pred, (pred + 0.05 * torch.randn(pred.shape, generator=torch.Generator().manual_seed(2))).clamp(
        -1, 1
    )


def test_image_metrics_on_cuda_match_cpu(inception_file: Path) -> None:
    """PSNR, SSIM, LPIPS and FID as torchmetrics on CUDA (states, update, compute) equal the CPU's."""
    torch.manual_seed(0)
    lp_net, fid_net = LPIPSAlex(), InceptionFID(inception_file)
    pred, target = _metric_pairs()
    results = {}
    for device in ("cpu", "cuda"):
        metrics = {
            "psnr": PSNR(),
            "ssim": SSIM(),
            "lpips": LPIPS(copy.deepcopy(lp_net)),
            "fid": FID(copy.deepcopy(fid_net)),
        }
        for name, m in metrics.items():
            m.to(device)
            if name == "fid":
                m.update(target.to(device), real=True)
                m.update(pred.to(device), real=False)
            else:
                m.update(pred.to(device), target.to(device))
        results[device] = {k: float(m.compute()) for k, m in metrics.items()}
    for name, ref in results["cpu"].items():
        assert results["cuda"][name] == pytest.approx(ref, rel=1e-4, abs=1e-6), name


def test_lse_on_cuda_matches_cpu() -> None:
    """LSE-D/C with SyncNet on CUDA (the metric moves its windows there) equal the CPU's."""
    torch.manual_seed(0)
    net = SyncNetV2()
    frames = _images(30, 224)
    t = np.arange(int(30 / 25 * 16000)) / 16000
    wav = (0.3 * np.sin(2 * np.pi * 200 * t) * np.sin(2 * np.pi * 3 * t)).astype(np.float32)
    scores = {}
    for device in ("cpu", "cuda"):
        metric = LSE(copy.deepcopy(net).to(device))
        metric.update(frames, wav)
        scores[device] = {k: float(v) for k, v in metric.compute().items()}
    for key, ref in scores["cpu"].items():
        assert scores["cuda"][key] == pytest.approx(ref, rel=1e-4, abs=1e-5), key
