"""GFPGAN v1.4 face restorer: official layout, modulated-conv numerics, batching, loading, 512² output."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edtalk import io, weights
from edtalk.apps.facesr import FaceRestorer, load_gfpgan
from edtalk.nn.gfpgan import GFPGAN, GFPGANConfig, ModulatedConv2d, infer_gfpgan_config
from tests.conftest import manifest


def test_layout_equals_official_params_ema() -> None:
    """Every key and shape of GFPGANv1.4.pth `params_ema` (the manifest), nothing more."""
    expected = manifest("gfpgan_v1_4")
    sd = GFPGAN().state_dict()
    assert {k: list(v.shape) for k, v in sd.items()} == expected["state_dict"]
    buffers = {k for k in sd if ".noises." in k}
    assert sorted(buffers) == sorted(expected["buffers"])
    assert sum(v.numel() for k, v in sd.items() if k not in buffers) == expected["num_params"] == 86_444_252
    # fp32 payload of the released 348,632,874-byte file (the rest is pickle framing).
    assert sum(v.numel() for v in sd.values()) * 4 == 348_573_104


def _reference_modconv(conv: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's definition: a per-sample modulated (and demodulated) weight, grouped convolution."""
    b, c = x.shape[:2]
    w = conv.weight * conv.modulation(style).view(b, 1, c, 1, 1)  # -> B x Cout x Cin x k x k
    if conv.demodulate:
        w = w * torch.rsqrt(w.pow(2).sum((2, 3, 4)) + 1e-8).view(b, -1, 1, 1, 1)
    if conv.upsample:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    k = w.shape[-1]
    out = F.conv2d(x.reshape(1, -1, *x.shape[2:]), w.reshape(-1, c, k, k), padding=k // 2, groups=b)
    return out.view(b, -1, *out.shape[2:])


@pytest.mark.parametrize(
    ("kernel", "demodulate", "upsample"), [(3, True, True), (3, True, False), (1, False, False)]
)
def test_modulated_conv_equals_per_sample_weights(kernel: int, demodulate: bool, upsample: bool) -> None:
    conv = ModulatedConv2d(6, 5, kernel, 8, demodulate, upsample)
    x, style = torch.randn(3, 6, 8, 8), torch.randn(3, 8)
    ours = conv(x, style)
    assert ours.shape == (3, 5, 16 if upsample else 8, 16 if upsample else 8)
    torch.testing.assert_close(ours, _reference_modconv(conv, x, style), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "variant",
    [{}, {"sft_half": False}, {"different_w": False}, {"input_is_latent": False}],
    ids=["v1.4", "sft_full", "one_w", "mlp"],
)
def test_forward_shapes_and_conditions_matter(variant: dict) -> None:
    cfg = GFPGANConfig(out_size=64, style_dim=16, narrow=1 / 16, num_mlp=2, **variant)
    net = GFPGAN(cfg).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        y = net(x)
        assert y.shape == (2, 3, 64, 64) and torch.isfinite(y).all()
        assert (y[0] - y[1]).abs().mean() > 1e-3  # the output depends on the input face
        net.condition_shift[-1][2].bias.add_(1.0)  # the SFT maps reach the image
        assert (net(x) - y).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="expects 64x64"):
        net(torch.zeros(1, 3, 32, 32))


def test_noise_stored_by_default_random_on_request() -> None:
    net = GFPGAN(GFPGANConfig(out_size=32, style_dim=16, narrow=1 / 16, num_mlp=1)).eval()
    for p in net.stylegan_decoder.style_convs:
        p.weight.data.fill_(0.5)  # official noise strengths are non-zero
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
        assert (net(x, randomize_noise=True) - net(x)).abs().max() > 1e-4


@pytest.fixture(scope="module")
def tiny512() -> GFPGAN:
    torch.manual_seed(1)
    return GFPGAN(GFPGANConfig.tiny()).eval()


def test_restore_batched_equals_per_frame(tiny512: GFPGAN) -> None:
    frames = torch.rand(3, 3, 256, 256) * 2 - 1
    batched = FaceRestorer.from_module(tiny512, batch_size=2).restore(frames)
    single = torch.cat([FaceRestorer.from_module(tiny512, batch_size=1).restore(f[None]) for f in frames])
    assert batched.shape == (3, 3, 512, 512) and batched.dtype == torch.float32
    assert batched.min() >= -1 and batched.max() <= 1
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_restore_to_512_mp4_with_audio(tmp_path: Path, tiny512: GFPGAN) -> None:
    frames = torch.rand(4, 3, 256, 256) * 2 - 1
    restorer = FaceRestorer.from_module(tiny512, batch_size=4)
    tone = (0.2 * np.sin(np.arange(4 * 640) / 10)).astype(np.float32)
    with io.VideoWriter(tmp_path / "sr.mp4", audio=tone) as writer:
        for chunk in restorer.restore_stream(frames.split(2)):
            writer.write(io.to_uint8(chunk))
    info = io.probe_video(tmp_path / "sr.mp4")
    assert (info.width, info.height, info.num_frames, info.has_audio) == (512, 512, 4, True)
    assert math.isclose(info.fps, 25)
    back = io.read_video(tmp_path / "sr.mp4")
    expected = io.to_uint8(restorer.restore(frames)).numpy().astype(np.float32)
    assert np.abs(back.astype(np.float32) - expected).mean() < 8  # H.264 at crf 18


def test_official_file_round_trip(tmp_path: Path, tiny512: GFPGAN) -> None:
    path = weights.save_official(tiny512, "gfpgan", tmp_path / "GFPGANv1.4.pth")
    assert set(torch.load(path, weights_only=True)) == {"params_ema"}
    back = load_gfpgan(path)  # architecture read from the shapes
    assert back.cfg == GFPGANConfig.tiny() and not back.training
    for k, v in tiny512.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    assert FaceRestorer(path, batch_size=2).size == 512


@pytest.mark.parametrize(
    "cfg",
    [
        GFPGANConfig(),
        GFPGANConfig.tiny(),
        GFPGANConfig(out_size=64, style_dim=16, narrow=1 / 16, num_mlp=2, sft_half=False),
    ],
    ids=["v1.4", "tiny", "sft_full"],
)
def test_config_inferred_from_shapes(cfg: GFPGANConfig) -> None:
    assert infer_gfpgan_config(GFPGAN(cfg).state_dict()) == cfg


def test_missing_file_says_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(weights.CheckpointError, match=r"not found: .*nope\.pth.*v1\.3\.4/GFPGANv1\.4\.pth"):
        FaceRestorer(tmp_path / "nope.pth")


def test_wrong_files_are_named(tmp_path: Path, tiny512: GFPGAN) -> None:
    other = tmp_path / "EDTalk.pt"
    torch.save({"gen": {"x": torch.zeros(1)}}, other)
    with pytest.raises(
        weights.CheckpointError,
        match=r"gfpgan checkpoint with top-level key 'params_ema' in .*EDTalk\.pt.*GFPGANv1\.4",
    ):
        load_gfpgan(other)
    tiny_file = weights.save_official(tiny512, "gfpgan", tmp_path / "tiny.pth")
    with pytest.raises(weights.CheckpointError, match=r"tiny\.pth.*shape mismatch"):
        load_gfpgan(tiny_file, GFPGANConfig())  # a 1/16-width file into the v1.4 architecture
    sd = {k: v for k, v in tiny512.state_dict().items() if not k.startswith("toRGB.3")}
    torch.save({"params_ema": sd}, tmp_path / "cut.pth")
    with pytest.raises(weights.CheckpointError, match=r"cut\.pth.*2 missing.*toRGB\.3"):
        load_gfpgan(tmp_path / "cut.pth")


@pytest.mark.weights
def test_official_weights_restore_a_face() -> None:
    """With the real GFPGANv1.4.pth (EDTALK_GFPGAN=path): loads strictly and keeps a face a face."""
    path = os.environ.get("EDTALK_GFPGAN")
    if not path or not Path(path).is_file():
        pytest.skip(f"set EDTALK_GFPGAN to {weights.WHERE_TO_GET['gfpgan']}")
    from edtalk.apps.quickstart import builtin_source

    face = builtin_source(256)
    out = FaceRestorer(path, batch_size=1).restore(face)
    ref = F.interpolate(face, size=(512, 512), mode="bilinear", align_corners=False)
    assert out.shape == (1, 3, 512, 512)
    assert (out - ref).abs().mean() < 0.15  # restoration sharpens, it does not repaint
