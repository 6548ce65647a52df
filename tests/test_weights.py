"""Official checkpoint key maps, strict loading, errors, our format round trip and export."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from edtalk import weights
from edtalk.config import GeneratorConfig
from edtalk.nn.generator import Generator
from tests.conftest import manifest

GEN_KINDS = ["edtalk_full", "edtalk_lip_pose", "lia_stage1"]


def random_state_dict(kind: str) -> dict[str, torch.Tensor]:
    """A state dict laid out exactly like the manifest, with random values (kernels at their fixed values)."""
    sd: dict[str, torch.Tensor] = {}
    for key, shape in manifest(kind)["state_dict"].items():
        if key.endswith(".kernel"):
            up = ".upsample." in key or ".blur." in key
            sd[key] = weights.make_kernel() * (4 if up else 1)
        elif key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(7)
        else:
            sd[key] = torch.randn(shape)
    return sd


@pytest.mark.parametrize("kind", GEN_KINDS)
def test_manifest_layout_loads_and_consumes_every_key(kind: str) -> None:
    sd = random_state_dict(kind)
    gen = weights.generator_from_official(sd, kind)
    ours = gen.state_dict()
    consumed = set()
    keymap = weights.KEY_MAPS[kind]
    for key, value in sd.items():
        mapped = keymap.to_ours(key)
        if mapped is None:
            continue  # a dead entry, listed explicitly in the key map
        consumed.add(key)
        assert torch.equal(ours[mapped], value), key
    dead = set(sd) - consumed
    assert all(any(re.search(p, k) for p in keymap.dead) for k in dead)
    expected_cfg = GeneratorConfig(variant="full" if kind == "edtalk_full" else "lip_pose")
    assert gen.cfg == expected_cfg


@pytest.mark.parametrize("kind", ["edtalk_full", "edtalk_lip_pose"])
def test_export_layout_equals_manifest(kind: str) -> None:
    """Our export of a default-size model has exactly the official keys, order-free, and shapes."""
    gen = Generator(GeneratorConfig(variant="full" if kind == "edtalk_full" else "lip_pose"))
    exported = weights.export_official(gen, kind)
    expected = manifest(kind)["state_dict"]
    assert set(exported) == set(expected)
    assert {k: list(v.shape) for k, v in exported.items()} == expected


@pytest.mark.parametrize("variant", ["full", "lip_pose"])
def test_export_then_import_is_identity(tmp_path: Path, variant: str) -> None:
    kind = "edtalk_full" if variant == "full" else "edtalk_lip_pose"
    gen = Generator(GeneratorConfig.tiny(variant))
    path = weights.save_official(gen, kind, tmp_path / "official.pt")
    back = weights.load_official(path, kind)
    # Official files carry no config: the inferred one must describe the same architecture.
    levels = [2**i for i in range(2, gen.cfg.log_size + 1)]
    assert [back.cfg.channels(r) for r in levels] == [gen.cfg.channels(r) for r in levels]
    assert back.cfg.variant == gen.cfg.variant and back.cfg.style_dim == gen.cfg.style_dim
    for k, v in gen.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k


def test_own_format_round_trip_is_bit_exact(tmp_path: Path, tiny_generator: Generator) -> None:
    path = weights.save_checkpoint(tiny_generator, "generator", tmp_path / "g.pt", step=12)
    back = weights.load_generator(path)
    assert back.cfg == tiny_generator.cfg
    for k, v in tiny_generator.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    meta = weights.read_checkpoint(path, kind="generator")
    assert meta["version"] == weights.VERSION and meta["meta"] == {"step": 12}
    with pytest.raises(weights.CheckpointError, match="expected 'audio2lip'"):
        weights.read_checkpoint(path, kind="audio2lip")


def test_missing_file_error(tmp_path: Path) -> None:
    with pytest.raises(weights.CheckpointError, match="not found"):
        weights.load_official(tmp_path / "EDTalk.pt", "edtalk_full")


def test_truncated_file_error(tmp_path: Path) -> None:
    gen = Generator(GeneratorConfig.tiny("full"))
    path = weights.save_official(gen, "edtalk_full", tmp_path / "EDTalk.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(weights.CheckpointError, match="truncated"):
        weights.load_official(path, "edtalk_full")


def test_wrong_kind_errors(tmp_path: Path) -> None:
    lip = weights.save_official(
        Generator(GeneratorConfig.tiny("lip_pose")), "edtalk_lip_pose", tmp_path / "lp.pt"
    )
    with pytest.raises(
        weights.CheckpointError, match=r"is a .?edtalk_lip_pose.? checkpoint, expected edtalk_full"
    ):
        weights.load_official(lip, "edtalk_full")
    with pytest.raises(weights.CheckpointError, match="top-level key 'audio2lip'"):
        weights.load_official(lip, "audio2lip")
    torch.save({"something": {}}, tmp_path / "x.pt")
    with pytest.raises(weights.CheckpointError, match="holds no generator"):
        weights.load_generator(tmp_path / "x.pt")


def test_shape_mismatch_names_the_key() -> None:
    sd = random_state_dict("edtalk_full")
    gen = Generator(GeneratorConfig(variant="full"))
    mapped = weights.map_to_ours(sd, "edtalk_full")
    mapped["navigator.fc.0.weight"] = torch.randn(3, 3)
    with pytest.raises(weights.CheckpointError, match=r"navigator\.fc\.0\.weight"):
        weights.load_into(gen, mapped, "edtalk_full")


def test_altered_fir_kernel_is_rejected() -> None:
    sd = random_state_dict("edtalk_lip_pose")
    sd["dec.to_rgbs.0.upsample.kernel"] = torch.rand(4, 4)
    with pytest.raises(weights.CheckpointError, match="FIR kernel"):
        weights.generator_from_official(sd, "edtalk_lip_pose")


def test_prefixes_stripped_in_one_place() -> None:
    sd = {"module._orig_mod.a": torch.zeros(1), "b": torch.ones(1)}
    assert set(weights.strip_prefixes(sd)) == {"a", "b"}
