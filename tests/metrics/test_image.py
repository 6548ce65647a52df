"""PSNR / SSIM vs scikit-image, LPIPS vs the `lpips` package, accumulation and frozen judges."""

from __future__ import annotations

from pathlib import Path

import lpips
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torchvision.models import alexnet

from edtalk.io import from_uint8
from metrics.image import LPIPS, PSNR, SSIM
from metrics.judges import JudgeWeightsMissing, LPIPSAlex


def _pairs(n: int = 4, h: int = 40, w: int = 48) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    pred = np.clip(gt.astype(int) + rng.integers(-50, 50, gt.shape), 0, 255).astype(np.uint8)
    return pred, gt


@pytest.mark.parametrize("gaussian", [False, True])
def test_ssim_psnr_match_skimage_per_batch_and_accumulated(gaussian: bool) -> None:
    pred, gt = _pairs()
    kw = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False} if gaussian else {}
    ref_ssim = np.mean(
        [structural_similarity(g, p, channel_axis=-1, data_range=255, **kw) for p, g in zip(pred, gt)]
    )
    ref_psnr = np.mean([peak_signal_noise_ratio(g, p, data_range=255) for p, g in zip(pred, gt)])
    single_s, single_p = SSIM(gaussian=gaussian), PSNR()
    single_s.update(from_uint8(pred), from_uint8(gt))
    single_p.update(from_uint8(pred), from_uint8(gt))
    acc_s, acc_p = SSIM(gaussian=gaussian), PSNR()
    for i in range(0, 4, 3):  # uneven batches: 3 + 1 frames
        acc_s.update(from_uint8(pred[i : i + 3]), from_uint8(gt[i : i + 3]))
        acc_p.update(from_uint8(pred[i : i + 3]), from_uint8(gt[i : i + 3]))
    assert abs(float(single_s.compute()) - ref_ssim) < 1e-4
    assert abs(float(single_p.compute()) - ref_psnr) < 1e-4
    assert float(acc_s.compute()) == pytest.approx(float(single_s.compute()), abs=1e-12)
    assert float(acc_p.compute()) == pytest.approx(float(single_p.compute()), abs=1e-12)


def test_psnr_accepts_video_batches() -> None:
    pred, gt = _pairs(6)
    m = PSNR()
    m.update(from_uint8(pred).reshape(2, 3, 3, 40, 48), from_uint8(gt).reshape(2, 3, 3, 40, 48))
    assert int(m.count) == 6


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("w") / "alexnet-random.pth"
    torch.save(alexnet(weights=None).state_dict(), path)
    return path


def _reference_lpips(path: Path) -> lpips.LPIPS:
    ref = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    slice_of = {0: 1, 1: 1, 2: 2, 3: 2, 4: 2, 5: 3, 6: 3, 7: 3, 8: 4, 9: 4, 10: 5, 11: 5}
    state = torch.load(path)
    mapped = {
        f"slice{slice_of[int(k.split('.')[1])]}.{k.split('.', 1)[1]}": v
        for k, v in state.items()
        if k.startswith("features.") and int(k.split(".")[1]) in slice_of
    }
    ref.net.load_state_dict(mapped, strict=True)
    return ref.eval()


def test_lpips_matches_lpips_package(alexnet_file: Path) -> None:
    x, y = torch.rand(2, 5, 3, 64, 64) * 2 - 1, torch.rand(2, 5, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        ref = _reference_lpips(alexnet_file)(x.flatten(0, 1), y.flatten(0, 1)).flatten()
    metric = LPIPS(alexnet_path=alexnet_file)
    metric.update(x[:1], y[:1])
    metric.update(x[1:], y[1:])
    assert float(metric.compute()) == pytest.approx(float(ref.double().mean()), abs=1e-5)
    assert metric.last == pytest.approx(float(ref[5:].mean()), abs=1e-5)


def test_judge_stays_in_eval_and_frozen(alexnet_file: Path) -> None:
    metric = LPIPS(alexnet_path=alexnet_file)
    metric.train()
    assert not metric.net.training and not any(m.training for m in metric.net.modules())
    assert not any(p.requires_grad for p in metric.net.parameters())


def test_missing_alexnet_names_file_and_source(tmp_path: Path) -> None:
    with pytest.raises(JudgeWeightsMissing, match=r"alexnet-owt-7be5be79\.pth"):
        LPIPSAlex.from_files(tmp_path / "nope.pth")
