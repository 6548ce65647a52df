"""Shapes, bank orthonormality and latent arithmetic of the generator backbone."""

from __future__ import annotations

import pytest
import torch

from edtalk.config import GeneratorConfig
from edtalk.nn.generator import Generator


@pytest.mark.parametrize("size", [64, 128])
def test_shapes_any_power_of_two(tiny_generator: Generator, size: int) -> None:
    cfg = GeneratorConfig(**{**tiny_generator.cfg.to_dict(), "size": size})
    gen = Generator(cfg).eval()
    x = torch.rand(2, 3, size, size) * 2 - 1
    src = gen.encode(x)
    assert src.w_a.shape == (2, cfg.style_dim)
    assert [f.shape[-1] for f in src.feats] == [2**i for i in range(3, cfg.log_size + 1)]
    alpha = gen.coefficients(x)
    assert alpha["mouth"].shape == (2, 20) and alpha["pose"].shape == (2, 6)
    assert ("exp" in alpha) == cfg.has_expression
    out = gen(x, x, x, x)
    assert out.shape == (2, 3, size, size)
    assert torch.isfinite(out).all()


def test_bad_sizes_rejected() -> None:
    for size in (32, 96, 100):
        with pytest.raises(ValueError, match="power of two"):
            GeneratorConfig(size=size)


def test_banks_orthonormal_and_mutually_orthogonal() -> None:
    gen = Generator(GeneratorConfig(variant="full"))
    q = gen.basis().double()
    assert q.shape == (512, 36)
    assert (q.t() @ q - torch.eye(36, dtype=q.dtype)).abs().max() < 1e-5
    blocks = gen.banks.split(q)
    names = list(blocks)
    assert [blocks[n].shape[1] for n in names] == [20, 6, 10]
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert (blocks[a].t() @ blocks[b]).abs().max() < 1e-5, (a, b)


def test_qr_is_column_ordered() -> None:
    """Mouth+pose directions of the joint QR equal the QR of the mouth|pose bank alone (SPEC 3.2)."""
    gen = Generator(GeneratorConfig.tiny("full")).double()
    assert gen.banks.expression is not None
    q_all = gen.basis()
    q_mp, _ = torch.linalg.qr(gen.banks.mouth_pose + 1e-8, mode="reduced")
    assert torch.allclose(q_all[:, :26], q_mp, atol=1e-12)


def test_latent_is_sum_of_component_latents(tiny_generator: Generator) -> None:
    gen = tiny_generator
    b = 3
    alpha = {"mouth": torch.randn(b, 20), "pose": torch.randn(b, 6)}
    if gen.cfg.has_expression:
        alpha["exp"] = torch.randn(b, 10)
    w_a = torch.randn(b, gen.cfg.style_dim)
    w, e = gen.latent(w_a, alpha)
    parts = gen.component_latents(alpha)
    assert torch.allclose(w, w_a + sum(parts.values()), atol=1e-5)
    if gen.cfg.has_expression:
        assert e is not None and torch.allclose(e, parts["exp"], atol=1e-6)
    else:
        assert e is None


def test_render_broadcasts_one_source_over_a_batch(tiny_generator: Generator) -> None:
    """Rendering B frames from one encoded source equals rendering each frame on its own."""
    gen = tiny_generator.double()
    src = gen.encode(torch.rand(1, 3, 64, 64, dtype=torch.float64) * 2 - 1)
    alpha = {"mouth": torch.randn(4, 20), "pose": torch.randn(4, 6)}
    if gen.cfg.has_expression:
        alpha["exp"] = torch.randn(4, 10)
    alpha = {k: v.double() for k, v in alpha.items()}
    w, e = gen.latent(src.w_a, alpha)
    batched = gen.render(src, w, e)
    single = torch.cat([gen.render(src, w[i : i + 1], None if e is None else e[i : i + 1]) for i in range(4)])
    assert torch.allclose(batched, single, atol=1e-10)


def test_eem_cache_equals_direct_eem() -> None:
    """The per-source EEM cache gives the same features as running EEM on the fly."""
    gen = Generator(GeneratorConfig.tiny("full")).double()
    blocks = gen.synthesis.fineadainresblock
    assert blocks is not None
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    src = gen.encode(x)
    e = torch.randn(2, gen.cfg.style_dim, dtype=torch.float64)
    assert src.eem is not None
    for blk, f, n in zip(blocks, src.feats, src.eem, strict=True):
        assert torch.allclose(blk.modulate(f, n, e), blk(f.expand(2, -1, -1, -1), e), atol=1e-12)


def test_lip_pose_variant_has_no_expression_parts() -> None:
    gen = Generator(GeneratorConfig.tiny("lip_pose"))
    keys = gen.state_dict().keys()
    assert not any("exp_fc" in k or "fineadainresblock" in k or k == "banks.expression" for k in keys)
    assert gen.basis().shape[1] == 26
