"""`generator.exp_encoder: cnn` (ours): the expression weights from a BatchNorm CNN of their own.

Its parts and paths (the generator, the rendering pipeline, the stage hand-off from a lip-pose generator, the
expression stage's refusal of an ELN start), and what it is for: on the built-in data it learns the
emotions' anchors from the training speakers' frames and reads the held-out speakers' emotion."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from edtalk.config import GeneratorConfig
from edtalk.nn.encoder import ExpressionEncoder
from edtalk.nn.generator import Generator
from tests.learn import above, learn_seed, seed_torch


def _cnn(**kw: object) -> GeneratorConfig:
    return dataclasses.replace(GeneratorConfig.tiny("full"), exp_encoder="cnn", exp_encoder_width=8, **kw)


def test_the_reader_gives_the_expression_weights_and_replaces_eln() -> None:
    torch.manual_seed(0)
    gen = Generator(_cnn()).eval()
    keys = gen.state_dict().keys()
    assert gen.navigator.exp_fc is None and not any(k.startswith("navigator.exp_fc") for k in keys)
    assert any(k.startswith("exp_encoder.") for k in keys)
    frames = torch.rand(3, 3, gen.cfg.size, gen.cfg.size) * 2 - 1
    with torch.no_grad():
        c = gen.coefficients(frames)
        assert torch.equal(c["exp"], gen.exp_encoder(frames))  # type: ignore[misc]
        gen.exp_encoder.head.bias.add_(1.0)  # type: ignore[union-attr]
        moved = gen.coefficients(frames)
    assert torch.allclose(moved["exp"], c["exp"] + 1.0, atol=1e-6)
    assert torch.equal(moved["mouth"], c["mouth"]) and torch.equal(moved["pose"], c["pose"])


def test_the_rendering_pipeline_reads_the_same_weights() -> None:
    from edtalk.pipeline.render import Renderer

    torch.manual_seed(1)
    gen = Generator(_cnn()).eval()
    frames = torch.rand(4, 3, gen.cfg.size, gen.cfg.size) * 2 - 1
    with torch.no_grad():
        ours, piped = gen.coefficients(frames), Renderer(gen).coefficients(frames)
        still = Renderer(gen).still(frames[:1]).own
    for k in ("mouth", "pose", "exp"):
        assert torch.allclose(ours[k], piped[k], atol=1e-5), k
        assert torch.allclose(ours[k][:1], still[k], atol=1e-5), k


def test_unknown_reader_is_refused() -> None:
    with pytest.raises(ValueError, match="exp_encoder='resnet'"):
        dataclasses.replace(GeneratorConfig.tiny("full"), exp_encoder="resnet")


def test_a_lip_pose_generator_hands_off_to_a_full_one_with_a_reader(tmp_path: Path) -> None:
    from edtalk.weights import save_checkpoint
    from edtalk.weights.handoff import init_generator

    torch.manual_seed(2)
    lip = Generator(GeneratorConfig.tiny("lip_pose"))
    path = save_checkpoint(lip, "generator", tmp_path / "lip.pt")
    full = Generator(_cnn())
    reader = {k: v.clone() for k, v in full.state_dict().items() if k.startswith("exp_encoder.")}
    init_generator(full, path)
    sd = full.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in lip.state_dict().items())  # every lip-pose tensor copied
    assert all(torch.equal(v, sd[k]) for k, v in reader.items())  # the reader keeps its initialisation


def test_the_expression_stage_refuses_an_eln_start_without_eln() -> None:
    from edtalk.stages.expression import ExpressionConfig, ExpressionLoss, ExpressionStage

    cfg = ExpressionConfig(
        trainable=["exp_encoder.*", "banks.expression"],
        exp_anchor=3.0,
        exp_init="anchors",
        loss=ExpressionLoss(vgg=0.0),
    )
    with pytest.raises(ValueError, match=r"model\.exp_init=random"):
        ExpressionStage(Generator(_cnn()), None, None, cfg)


def _frames(root: Path, split: str, every: int, size: int) -> tuple[torch.Tensor, np.ndarray]:
    from datamodules.shards import iter_clips
    from edtalk.io import from_uint8
    from metrics.judges import resize_frames

    frames, labels = [], []
    for clip in iter_clips(root, split):
        idx = range(0, clip.num_frames, every)
        frames.append(resize_frames(from_uint8(torch.from_numpy(clip.frames(idx))).float(), size))
        labels += [int(clip.meta["factors"]["emotion_id"])] * len(idx)
    return torch.cat(frames), np.asarray(labels)


@pytest.mark.learns
def test_the_reader_learns_the_anchors_and_reads_new_speakers_emotion() -> None:
    """Regressing each frame's emotion anchor on the training speakers, the reader's weights place the
    held-out speakers' frames nearest their own emotion's anchor (chance 0.25 over the built-in four)."""
    from datamodules.synthetic import ensure_builtin
    from edtalk.nn.emotion import emotion_anchor_table

    root = ensure_builtin()
    x_tr, y_tr = _frames(root, "train", 3, 64)
    x_te, y_te = _frames(root, "test", 3, 64)
    seed_torch()
    net = ExpressionEncoder(10, width=16)
    table = emotion_anchor_table(10, 3.0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = torch.Generator().manual_seed(learn_seed(1))
    for _ in range(150):
        idx = torch.randint(len(x_tr), (16,), generator=rng)
        loss = ((net(x_tr[idx]) - table[torch.from_numpy(y_tr[idx.numpy()])]) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        exp = net.eval()(x_te)
    labels = np.unique(y_tr)
    nearest = labels[torch.cdist(exp, table[torch.from_numpy(labels)]).argmin(1).numpy()]
    above("held-out nearest-anchor accuracy", float((nearest == y_te).mean()), 0.6)


def test_a_frozen_reader_keeps_its_statistics_in_training_mode() -> None:
    torch.manual_seed(3)
    gen = Generator(_cnn())
    frames = torch.rand(4, 3, gen.cfg.size, gen.cfg.size) * 2 - 1
    gen.train()
    gen.coefficients(frames)  # trainable: batch statistics, running estimates move
    assert gen.exp_encoder is not None and gen.exp_encoder.training
    gen.exp_encoder.requires_grad_(False)
    gen.train()
    assert not gen.exp_encoder.training and gen.encoder.training
    before = {k: v.clone() for k, v in gen.exp_encoder.state_dict().items()}
    with torch.no_grad():
        out = gen.coefficients(frames)["exp"]
        assert torch.equal(out, gen.eval().coefficients(frames)["exp"])
    assert all(torch.equal(v, gen.exp_encoder.state_dict()[k]) for k, v in before.items())


def test_self_reconstruction_stages_render_with_the_readers_weights() -> None:
    """reconstruct and finetune drive the render with every component the generator reads, the reader's
    expression weights included (a fine-tune that left them out would learn renders without expression)."""
    from edtalk.stages.base import GANStageConfig, LossWeights
    from edtalk.stages.finetune import FinetuneStage

    torch.manual_seed(4)
    gen = Generator(_cnn())
    stage = FinetuneStage(gen, None, None, GANStageConfig(loss=LossWeights(vgg=0.0, gan=0.0)))
    size = gen.cfg.size
    batch = {"source": torch.rand(2, 3, size, size) * 2 - 1, "target": torch.rand(2, 3, size, size) * 2 - 1}
    out = stage.generator_step(batch)
    sum(out.losses.values()).backward()
    assert gen.exp_encoder is not None and gen.exp_encoder.head.weight.grad is not None
    assert float(gen.exp_encoder.head.weight.grad.abs().sum()) > 0
