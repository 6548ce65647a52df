"""`edtalk weights inspect` and the registry behind it, on random-init files in every real layout.

Each registered kind gets a file written the way its producer writes it (ours: `save_checkpoint`;
official: the release layout via `save_official` or a plain state dict; Lightning: a stage checkpoint's
`state_dict` + `edtalk` entries). Each must be recognised, report its config, and load strictly with
every tensor bit-exact; truncated, missing and wrong-kind files exit 2 with one line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import metrics.judges  # noqa: F401  (registers the judges' weight kinds, as `edtalk weights inspect` does)
from edtalk import weights
from edtalk.cli import main
from edtalk.config import GeneratorConfig
from edtalk.nn.audio2exp import Audio2Exp, Audio2ExpConfig
from edtalk.nn.audio2lip import Audio2Lip
from edtalk.nn.audio2pose import Audio2Pose, Audio2PoseConfig
from edtalk.nn.discriminator import Discriminator
from edtalk.nn.emotion import EmotionClassifier, EmotionClassifierConfig
from edtalk.nn.generator import Generator
from edtalk.nn.gfpgan import GFPGAN, GFPGANConfig
from edtalk.nn.syncnet import SyncNet

TINY = (4, 8, 8, 16, 16)  # Wav2Lip encoder widths for our small audio2mouth / syncnet files


class Case:
    """A written file: its path, the kind and source `inspect` must report, the tensors it must load."""

    def __init__(
        self, path: Path, kind: str, source: str, tensors: dict[str, torch.Tensor], cfg: Any
    ) -> None:
        self.path, self.kind, self.source, self.tensors, self.cfg = path, kind, source, tensors, cfg


def _ours(module: nn.Module, kind: str, d: Path) -> Case:
    path = weights.save_checkpoint(module, kind, d / f"{kind}.pt")
    return Case(path, kind, "ours", module.state_dict(), module.cfg)


def _official(module: nn.Module, kind: str, d: Path) -> Case:
    path = weights.save_official(module, kind, d / f"{kind}.pth")
    return Case(path, kind, "official", module.state_dict(), getattr(module, "cfg", None))


def _plain(sd: dict[str, torch.Tensor], kind: str, d: Path, ours: dict[str, torch.Tensor], cfg: Any) -> Case:
    path = d / f"{kind}.pth"
    torch.save(sd, path)
    return Case(path, kind, "official", ours, cfg)


def _lia(d: Path) -> Case:
    """LIA's vox.pt: the lip-pose layout without the mouth/pose heads and banks EDTalk adds."""
    gen = Generator(GeneratorConfig.tiny("lip_pose"))
    sd = weights.export_official(gen, "lia_stage1")
    sd = {k: v for k, v in sd.items() if not k.startswith(("navigator.", "banks."))}
    torch.save({"gen": sd, "dis": {}, "args": None}, d / "vox.pt")
    keep = {
        k: v
        for k, v in gen.state_dict().items()
        if not k.startswith(("navigator.lip", "navigator.pose", "banks."))
    }
    return Case(d / "vox.pt", "lia_stage1", "official", keep, gen.cfg)


def _syncnet_v2(d: Path) -> Case:
    from metrics.judges import SyncNetV2

    sd = SyncNetV2().state_dict()
    return _plain(sd, "syncnet_v2", d, sd, {"embed_dim": 1024})


def _arcface(d: Path) -> Case:
    from metrics.judges import ArcFace

    sd = ArcFace((2, 2, 2, 2)).state_dict()
    return _plain(sd, "arcface", d, sd, {"layers": [2, 2, 2, 2], "embed_dim": 512})


def _dead_classifier() -> dict[str, torch.Tensor]:
    """torchvision's classifier entries at their names (never read; one element each keeps files small)."""
    return {f"classifier.{i}.{p}": torch.zeros(1) for i in (1, 4, 6) for p in ("weight", "bias")}


def _alexnet(d: Path) -> Case:
    from torchvision.models import alexnet

    feats = {k: v for k, v in alexnet(weights=None).state_dict().items() if k.startswith("features.")}
    return _plain({**feats, **_dead_classifier()}, "alexnet", d, feats, {})


def _vgg19(d: Path) -> Case:
    from edtalk.losses.perceptual import vgg19_features

    used = vgg19_features(1.0).state_dict()
    tail = {f"features.{i}.weight": torch.randn(512, 512, 3, 3) for i in (30, 32, 34)}
    sd = {**{f"features.{k}": v for k, v in used.items()}, **tail, **_dead_classifier()}
    return _plain(sd, "vgg19", d, used, {"width": 1.0})


def _wav2lip(d: Path) -> Case:
    """Wav2Lip's generator checkpoint: DDP-prefixed `state_dict`; only its audio encoder is read."""
    net = Audio2Lip(20, TINY)
    enc = {k: v for k, v in net.state_dict().items() if k.startswith("audio_encoder.")}
    face = {
        "face_encoder_blocks.0.0.conv_block.0.weight": torch.zeros(1),
        "output_block.0.weight": torch.zeros(1),
    }
    torch.save({"state_dict": {f"module.{k}": v for k, v in {**enc, **face}.items()}}, d / "wav2lip.pth")
    return Case(d / "wav2lip.pth", "wav2lip", "official", enc, net.cfg)


def _emotion_fan(d: Path) -> Case:
    """EAT's Emotion-FAN file: {epoch, state_dict (DDP prefixes, `fc.*` unused), accuracy, name}."""
    from metrics.judges.emotion_fan import EmotionFAN

    net = EmotionFAN()
    sd = {f"module.{k}": v for k, v in net.state_dict().items()}
    sd["module.fc.weight"] = torch.zeros(7, 512)
    torch.save({"epoch": 61, "state_dict": sd, "accuracy": 84.37, "name": "fan"}, d / "fan.pth.tar")
    return Case(d / "fan.pth.tar", "emotion_fan", "official", net.state_dict(), net.config)


def _inception_imagenet(d: Path) -> Case:
    from torchvision.models import inception_v3

    sd = inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict()
    return _plain(sd, "inception_v3_imagenet", d, sd, {})


def _lightning_gan(d: Path) -> tuple[Case, Case]:
    gen, disc = Generator(GeneratorConfig.tiny("full")), Discriminator(64, 1.0, 8)
    states = {f"generator.{k}": v for k, v in gen.state_dict().items()}
    states.update({f"discriminator.{k}": v for k, v in disc.state_dict().items()})
    ckpt = {"epoch": 0, "global_step": 3, "pytorch-lightning_version": "2.x", "state_dict": states}
    ckpt["edtalk"] = {"version": 1, "stage": "reconstruct", "generator": gen.cfg.to_dict(), "ema": False}
    path = d / "reconstruct.ckpt"
    torch.save(ckpt, path)
    g = Case(path, "generator", "lightning", gen.state_dict(), gen.cfg)
    return g, Case(path, "discriminator", "lightning", disc.state_dict(), disc.cfg)


def _lightning_supervised(d: Path) -> Case:
    net = SyncNet(TINY)
    states = {f"net.{k}": v for k, v in net.state_dict().items()}
    meta = {"version": 1, "stage": "syncnet", "kind": "syncnet", "network": {"channels": list(TINY)}}
    torch.save({"global_step": 5, "state_dict": states, "edtalk": meta}, d / "syncnet.ckpt")
    return Case(d / "syncnet.ckpt", "syncnet", "lightning", net.state_dict(), net.cfg)


WRITERS: dict[str, Callable[[Path], Case]] = {
    "generator": lambda d: _ours(Generator(GeneratorConfig.tiny("full")), "generator", d),
    "edtalk_full": lambda d: _official(Generator(GeneratorConfig.tiny("full")), "edtalk_full", d),
    "edtalk_lip_pose": lambda d: _official(Generator(GeneratorConfig.tiny("lip_pose")), "edtalk_lip_pose", d),
    "lia_stage1": _lia,
    "discriminator": lambda d: _official(Discriminator(64, 1.0, 8), "discriminator", d),
    "audio2lip": lambda d: _official(Audio2Lip(), "audio2lip", d),
    "audio2mouth": lambda d: _ours(Audio2Lip(20, TINY), "audio2mouth", d),
    "syncnet_expert": lambda d: _official(SyncNet(), "syncnet_expert", d),
    "syncnet": lambda d: _ours(SyncNet(TINY), "syncnet", d),
    "gfpgan": lambda d: _official(GFPGAN(GFPGANConfig.tiny()), "gfpgan", d),
    "audio2pose": lambda d: _ours(Audio2Pose(Audio2PoseConfig.tiny()), "audio2pose", d),
    "audio2exp": lambda d: _ours(Audio2Exp(Audio2ExpConfig.tiny()), "audio2exp", d),
    "emotion_classifier": lambda d: _ours(
        EmotionClassifier(EmotionClassifierConfig.tiny()), "emotion_classifier", d
    ),
    "syncnet_v2": _syncnet_v2,
    "arcface": _arcface,
    "alexnet": _alexnet,
    "vgg19": _vgg19,
    "wav2lip": _wav2lip,
    "emotion_fan": _emotion_fan,
    "inception_v3_imagenet": _inception_imagenet,
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    cases = {name: write(d) for name, write in WRITERS.items() if name in weights.KINDS}
    cases["lightning_generator"], cases["lightning_discriminator"] = _lightning_gan(d)
    cases["lightning_syncnet"] = _lightning_supervised(d)
    return cases


def _case(files: dict[str, Case], name: str) -> Case:
    if name not in files:
        pytest.skip(f"weight kind {name!r} is not registered in this tree")
    return files[name]


def _inspect(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    rc = main(["weights", "inspect", *argv])
    return rc, capsys.readouterr().out.strip().splitlines()


def test_the_judges_register_their_kinds() -> None:
    """`metrics.judges` owns the judge kinds; once imported (the CLI does) they are inspectable."""
    judge_kinds = {"syncnet_v2", "alexnet", "arcface", "emotion_fan", "inception_v3_imagenet"}
    assert judge_kinds <= set(weights.KINDS)
    assert not judge_kinds & {k.name for k in (*weights.kinds.BUILTIN, *weights.kinds.FOREIGN)}


def test_every_registered_kind_has_a_file_layout_here() -> None:
    """A new kind must come with a writer above, so `inspect` is proven on its real layout."""
    assert set(weights.KINDS) <= set(WRITERS), sorted(set(weights.KINDS) - set(WRITERS))


LAYOUTS = ("edtalk_full", "edtalk_lip_pose", "lia_stage1", "audio2lip", "syncnet_expert")  # `guess_kind`
CASES = [*WRITERS, "lightning_generator", "lightning_discriminator", "lightning_syncnet"]


@pytest.mark.parametrize("name", CASES)
def test_inspect_json_says_what_the_file_is_and_that_it_loads(
    files: dict[str, Case], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    case = _case(files, name)
    rc, lines = _inspect(capsys, str(case.path), "--kind", case.kind, "--json")
    report = json.loads(lines[-1])
    assert rc == 0, report["reason"]
    assert report["loads"] is True and report["reason"] is None
    assert (report["path"], report["kind"], report["source"]) == (str(case.path), case.kind, case.source)
    assert report["n_tensors"] == len(case.tensors)
    expected_cfg = json.loads(json.dumps(weights.registry.config_dict(case.cfg)))
    if case.source == "official":  # inferred from shapes: an equivalent architecture (it loaded strictly)
        assert set(report["config"]) == set(expected_cfg)
    else:  # the config stored with the weights
        assert report["config"] == expected_cfg


@pytest.mark.parametrize("name", CASES)
def test_load_is_strict_and_bit_exact(files: dict[str, Case], name: str) -> None:
    case = _case(files, name)
    state = weights.load(case.path, case.kind).state_dict()
    assert set(case.tensors) <= set(state)
    for key, value in case.tensors.items():
        assert torch.equal(state[key], value), key


@pytest.mark.parametrize("name", [n for n in CASES if n != "lightning_discriminator"])
def test_kind_is_guessed_without_kind(
    files: dict[str, Case], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    case = _case(files, name)
    rc, lines = _inspect(capsys, str(case.path))
    assert len(lines) == 1, lines
    if case.source == "official" and weights.KINDS[case.kind].looks_like is None and case.kind not in LAYOUTS:
        assert rc == 2 and "pass the kind (--kind)" in lines[0]  # no recognisable layout: say so
        return
    assert rc == 0 and "loads strictly" in lines[0] and case.kind in lines[0]


def test_truncated_file_exits_2_with_one_line(
    files: dict[str, Case], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = files["generator"].path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    rc, lines = _inspect(capsys, str(cut), "--kind", "generator")
    assert rc == 2 and len(lines) == 1 and "truncated" in lines[0] and "cut.pt" in lines[0]
    rc, lines = _inspect(capsys, str(cut), "--json")
    report = json.loads(lines[-1])
    assert rc == 2 and report["loads"] is False and "truncated" in report["reason"]


@pytest.mark.parametrize(
    ("name", "kind", "looks_like"),
    [
        ("edtalk_lip_pose", "audio2lip", "edtalk_lip_pose"),
        ("edtalk_lip_pose", "edtalk_full", "edtalk_lip_pose"),
        ("arcface", "syncnet_v2", "arcface"),
        ("audio2pose", "generator", "audio2pose"),
        ("lightning_syncnet", "audio2pose", "syncnet"),
        ("gfpgan", "alexnet", "gfpgan"),
    ],
)
def test_wrong_kind_exits_2_naming_what_it_looks_like(
    files: dict[str, Case], name: str, kind: str, looks_like: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, lines = _inspect(capsys, str(files[name].path), "--kind", kind)
    assert rc == 2 and len(lines) == 1, lines
    assert f"'{looks_like}'" in lines[0] and kind in lines[0]


def test_missing_unknown_and_mismatched_files_exit_2(
    files: dict[str, Case], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, lines = _inspect(capsys, str(tmp_path / "nope.pth"), "--kind", "gfpgan")
    assert rc == 2 and len(lines) == 1 and "not found" in lines[0] and "GFPGANv1.4" in lines[0]
    torch.save({"x": torch.zeros(1)}, tmp_path / "odd.pt")
    rc, lines = _inspect(capsys, str(tmp_path / "odd.pt"))
    assert rc == 2 and len(lines) == 1 and "--kind" in lines[0]
    ckpt = torch.load(files["generator"].path, weights_only=True)
    ckpt["state_dict"]["navigator.fc.0.weight"] = torch.zeros(3, 3)
    torch.save(ckpt, tmp_path / "bent.pt")
    rc, lines = _inspect(capsys, str(tmp_path / "bent.pt"), "--json")
    report = json.loads(lines[-1])
    assert rc == 2 and report["source"] == "ours" and "navigator.fc.0.weight" in report["reason"]
    del ckpt["state_dict"]["banks.expression"]
    torch.save(ckpt, tmp_path / "short.pt")
    rc, lines = _inspect(capsys, str(tmp_path / "short.pt"))
    assert rc == 2 and "1 missing ['banks.expression']" in lines[0]
    rc, lines = _inspect(capsys, str(files["generator"].path), "--kind", "nonsense")
    assert rc == 2 and "known:" in lines[0]


def test_read_returns_config_and_our_keys(files: dict[str, Case]) -> None:
    case = files["edtalk_full"]
    cfg, sd = weights.read(case.path)
    assert isinstance(cfg, GeneratorConfig) and cfg.variant == "full"
    assert set(sd) == set(case.tensors)
