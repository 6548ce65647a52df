"""Rendering speed: the original demos' per-frame way vs ours, same weights, same process.

Every mode of `edtalk generate`, float32 and bf16 autocast.

Modes (`--mode`, one per original demo script; `all` runs each):
| mode              | original demo script                              | mouth | pose  | expression      |
|-------------------|---------------------------------------------------|-------|-------|-----------------|
| audio_weights     | demo_EDTalk_A_using_predefined_exp_weights.py     | audio | video | emotion weights |
| audio_exp_video   | demo_EDTalk_A.py                                  | audio | video | video           |
| lip_pose          | demo_lip_pose.py (lip-pose generator)             | audio | video | none            |
| lip_video         | demo_lip_pose_V.py (lip-pose generator)           | video | video | none            |
| video_driven      | demo_EDTalk_V.py                                  | video | video | video           |
Mouth weights from audio are precomputed (Audio2Lip is negligible); each driver video is its own
tensor (the original encodes every driver frame, so do we, in chunks).

(a) baseline, the original structure: per frame, batch 1, re-encode the source, encode every driver
    frame, QR twice, modulated convs as grouped convolutions, EEM with its discarded conv1/AdaIN_1
    branch, sampling grids rebuilt every call — first with glibc's default allocator (as users run
    it), then with the tuned allocator (the original's best case, SPEC section 9).
(b) ours: source encoded once (EEM's expression-independent half cached), Q once, driver frames and
    synthesis in chunks of 2 in the channels-last layout, derived weights cached, conv epilogues fused,
    tuned allocator; float32, then (c) the same under bfloat16 autocast (`edtalk generate --bf16`),
    compared with (b) frame by frame: PSNR (pixels clamped to [-1, 1], peak-to-peak 2) and mean |diff|.

    python benchmarks/render.py --frames 24 [--mode all] [--weights parity|FILE] [--inputs photo] [--layers] [--json]

`--weights parity` rebuilds the parity weights (shared/upstream/parity recipes, 256^2); the default is a
seeded random model with tamed heads (`tame`); a file is any generator checkpoint (a trained one says how
bf16 does on realistic weights). `--inputs photo` renders a real photo moved by a few pixels instead of
noise images (noise through random weights is chaotic: `--layers` prints the floor, float32 with the
inputs perturbed by bf16's rounding, beside each module's fp32 vs bf16 error). The bf16 path is
`edtalk generate --bf16`'s: autocast, with float32 islands (source encoding, flows, EEM, coarse decoder
levels; `edtalk.nn.synthesis`). The machine may be shared: only ratios measured in one
process mean anything. With --json the last line is
{"baseline_fps", "baseline_tuned_fps", "ours_fps", "ratio", "ratio_tuned", "max_abs_diff", "gemm_gflops",
 "bf16_fps", "bf16_ratio", "bf16_psnr_vs_fp32", "bf16_mae_vs_fp32", "bf16_speedup", "mode", "modes"}: the
top-level keys are the first mode's, "modes" holds every measured mode's.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from edtalk.config import GeneratorConfig
from edtalk.nn.encoder import AppearanceEncoder
from edtalk.nn.generator import Generator
from edtalk.nn.layers import (
    SQRT2,
    Blur,
    ConvLayer,
    EqualConv2d,
    FusedLeakyReLU,
    ModulatedConv2d,
    ResBlock,
    StyledConv,
)
from edtalk.nn.synthesis import ToFlow, ToRGB
from edtalk.perf import tune_cpu_allocator
from edtalk.pipeline.render import Renderer


def grouped_modconv(mod: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """The original's modulated convolution: per-sample weights, one grouped conv over the batch."""
    b, cin, h, w = x.shape
    s = mod.modulation(style).view(b, 1, cin, 1, 1)
    weight = mod.scale * mod.weight * s  # -> B x Cout x Cin x k x k
    if mod.demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, mod.out_ch, 1, 1, 1)
    k = mod.kernel_size
    if mod.upsample:
        weight = weight.transpose(1, 2).reshape(b * cin, mod.out_ch, k, k)
        out = F.conv_transpose2d(x.reshape(1, b * cin, h, w), weight, stride=2, groups=b)
        out = out.view(b, mod.out_ch, out.shape[-2], out.shape[-1])
        return upfirdn2d_native(out, mod.blur.kernel, pad=mod.blur.pad)
    out = F.conv2d(
        x.reshape(1, b * cin, h, w), weight.view(b * mod.out_ch, cin, k, k), padding=mod.padding, groups=b
    )
    return out.view(b, mod.out_ch, h, w)


def upfirdn2d_native(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """The original's FIR filter: literal zero insertion, F.pad, single-channel conv over B*C maps."""
    b, c, h, w = x.shape
    out = x.reshape(b * c, 1, h, 1, w, 1)
    out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1]).reshape(b * c, 1, h * up, w * up)
    out = F.pad(out, [pad[0], pad[1], pad[0], pad[1]])
    out = F.conv2d(out, torch.flip(kernel, [0, 1])[None, None])
    return out.reshape(b, c, out.shape[-2], out.shape[-1])


def conv_layer(layer: ConvLayer, x: torch.Tensor) -> torch.Tensor:
    """The original ConvLayer: [blur] -> equalised conv -> bias + leaky ReLU * sqrt(2), one op each."""
    mods = list(layer)
    if isinstance(mods[0], Blur):
        x = upfirdn2d_native(x, mods[0].kernel, pad=mods[0].pad)
        mods = mods[1:]
    conv = mods[0]
    assert isinstance(conv, EqualConv2d)
    x = F.conv2d(x, conv.weight * conv.scale, conv.bias, stride=conv.stride, padding=conv.padding)
    if len(mods) > 1:
        act = mods[1]
        x = F.leaky_relu(x + act.bias, 0.2) * SQRT2 if isinstance(act, FusedLeakyReLU) else act(x)
    return x


def encoder(enc: AppearanceEncoder, img: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The original EncoderApp: every layer unfused, every pyramid level kept."""
    res, h = [], img
    for layer in enc.convs:
        if isinstance(layer, ResBlock):
            h = (conv_layer(layer.conv2, conv_layer(layer.conv1, h)) + conv_layer(layer.skip, h)) / SQRT2
        elif isinstance(layer, ConvLayer):
            h = conv_layer(layer, h)
        else:
            h = layer(h)
        res.append(h)
    return h.flatten(1), res[::-1][2:]


class UpstreamStyle:
    """Runs our modules with the original demo's computation structure (same weights, same math)."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        # The released EEM computes conv1 -> AdaIN_1 -> LeakyReLU and then discards it (full model only).
        device = next(gen.parameters()).device  # the dead branch lives where the model does (CPU or GPU)
        self.dead = [
            (
                torch.nn.Conv2d(b.conv2.in_channels, b.conv2.in_channels, 3, padding=1).to(device),
                type(b.norm2)(  # the style width of this model (512 in the released one)
                    b.conv2.in_channels, b.norm2.mlp_shared[0].in_features, b.norm2.mlp_gamma.in_features
                ).to(device),
            )
            for b in gen.synthesis.eem_blocks
        ]

    def styled(self, layer: StyledConv, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(grouped_modconv(layer.conv, x, w) + layer.activate.bias, 0.2) * SQRT2

    def to_flow(
        self, tf: ToFlow, x: torch.Tensor, w: torch.Tensor, feat: torch.Tensor, skip: torch.Tensor | None
    ):
        logits = grouped_modconv(tf.conv, x, w) + tf.bias
        if skip is not None:
            logits = logits + upfirdn2d_native(skip, tf.upsample.kernel, 2, tf.upsample.pad)
        xs = torch.linspace(-1, 1, x.shape[-1], device=x.device)
        gy, gx = torch.meshgrid(xs, xs, indexing="ij")  # rebuilt every call, as upstream
        grid = torch.stack([gx, gy], -1)[None].repeat(x.shape[0], 1, 1, 1)
        flow = torch.tanh(logits[:, :2]).permute(0, 2, 3, 1) + grid
        mask = torch.sigmoid(logits[:, 2:3])
        warped = F.grid_sample(feat, flow, align_corners=False) * mask
        return warped, warped + x * (1 - mask), logits

    def synthesis(self, w: torch.Tensor, feats: list[torch.Tensor], e: torch.Tensor | None) -> torch.Tensor:
        syn = self.gen.synthesis
        out = self.styled(syn.conv1, syn.input(w.shape[0]), w)
        rgb, skip = None, None
        for j, feat in enumerate(feats):
            out = self.styled(syn.convs[2 * j], out, w)
            out = self.styled(syn.convs[2 * j + 1], out, w)
            if self.dead and e is not None:
                conv1, norm1 = self.dead[j]
                _ = F.leaky_relu(norm1(conv1(feat), e), 0.01)  # computed, then overwritten upstream
                feat = syn.eem_blocks[j](feat, e)
            warped, out, skip = self.to_flow(syn.to_flows[j], out, w, feat, skip)
            to_rgb: ToRGB = syn.to_rgbs[j]
            out_rgb = conv_layer(to_rgb.conv, warped) + to_rgb.bias
            if rgb is not None:
                out_rgb = out_rgb + upfirdn2d_native(rgb, to_rgb.upsample.kernel, 2, to_rgb.upsample.pad)
            rgb = out_rgb
        assert rgb is not None
        return rgb

    @torch.no_grad()
    def frame_mode(self, source: torch.Tensor, drive: dict[str, torch.Tensor]) -> torch.Tensor:
        """One frame as the original demos compute it: every image in `drive` (1 x 3 x H x W) is
        encoded, every 1 x d tensor is used as weights; components missing from `drive` are not rendered."""
        gen = self.gen
        w_a, feats = encoder(gen.encoder, source)  # the source, re-encoded every frame
        alpha = {}
        for comp, x in drive.items():
            alpha[comp] = gen.navigator(encoder(gen.encoder, x)[0])[comp] if x.ndim == 4 else x
        gen.basis()  # the original computes QR twice per frame
        w, e = gen.latent(w_a, alpha)
        return self.synthesis(w, feats, e)

    @torch.no_grad()
    def frame(
        self, source: torch.Tensor, mouth: torch.Tensor, pose_img: torch.Tensor, exp: torch.Tensor
    ) -> torch.Tensor:
        """audio_weights: mouth weights 1 x 20, a pose image, expression weights 1 x 10."""
        return self.frame_mode(source, {"mouth": mouth, "pose": pose_img, "exp": exp})


@torch.no_grad()
def render_ours(
    gen: Generator,
    source: torch.Tensor,
    mouth: torch.Tensor,
    pose_frames: torch.Tensor,
    exp: torch.Tensor,
    chunk: int,
) -> torch.Tensor:
    """The shipped renderer (`edtalk.pipeline.Renderer`, channels-last): pose from the driver frames."""
    renderer = Renderer(gen, chunk_size=chunk)
    motion = {"mouth": mouth, "pose": None, "exp": exp.expand(len(mouth), -1)}
    return renderer(source, motion, drivers=pose_frames)[0]


def gemm_gflops(n: int = 1024, reps: int = 10) -> float:
    """float32 GEMM throughput now: a calibration of how busy the shared CPU is (SPEC section 9)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def tame(gen: Generator, factor: float = 0.01) -> Generator:
    """Shrink the flow, AdaIN and RGB heads so a random float32 model is well conditioned.

    With random full-scale flow heads the decoder is chaotic (SPEC parity notes: a 1e-16 change of the
    latent moves pixels by O(1) in float32), so two correct float32 implementations disagree by ~1e-2
    through rounding alone; trained models are smooth.
    """
    with torch.no_grad():
        for tf in gen.synthesis.to_flows:
            tf.conv.weight.mul_(factor)
        for blk in gen.synthesis.eem_blocks:  # random AdaIN scales amplify float rounding too
            blk.norm2.mlp_gamma.weight.mul_(0.1)
            blk.norm2.mlp_beta.weight.mul_(0.1)
        for rgb in gen.synthesis.to_rgbs:  # random RGB heads give |pixels| ~ 5; images live in [-1, 1]
            rgb.conv[0].weight.mul_(0.1)
    return gen


# mode -> (generator variant, {component: where its motion comes from}); "audio"/"weights" are
# precomputed bank weights, "video" a driver video encoded frame by frame.
MODES: dict[str, tuple[str, dict[str, str]]] = {
    "audio_weights": ("full", {"mouth": "audio", "pose": "video", "exp": "weights"}),
    "audio_exp_video": ("full", {"mouth": "audio", "pose": "video", "exp": "video"}),
    "lip_pose": ("lip_pose", {"mouth": "audio", "pose": "video"}),
    "lip_video": ("lip_pose", {"mouth": "video", "pose": "video"}),
    "video_driven": ("full", {"mouth": "video", "pose": "video", "exp": "video"}),
}


@dataclass
class Case:
    """One mode's model and inputs: a source photo, and per component T x d weights or T x 3 x S x S frames."""

    name: str
    gen: Generator
    source: torch.Tensor
    drive: dict[str, torch.Tensor]
    frames: int

    def frame_inputs(self, i: int) -> dict[str, torch.Tensor]:
        """Frame i's drivers as the original demo gets them (weights 1 x d broadcast, images 1 x 3 x S x S)."""
        return {k: v[i : i + 1] if len(v) > 1 or v.ndim == 4 else v for k, v in self.drive.items()}


def photo(size: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A real photo (scikit-image's astronaut, area-resized) as the source, and drivers that move it: the
    photo shifted by 0, 2, 4, ... pixels diagonally (a head moving in frame)."""
    from skimage import data

    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 127.5 - 1
    img = F.interpolate(img, size=size, mode="area")
    shifts = [2 * (i % 8) * size // 256 for i in range(frames)]
    return img, torch.cat([torch.roll(img, (s, -s), (2, 3)) for s in shifts])


def make_case(name: str, gens: dict[str, Generator], frames: int, size: int, inputs: str = "noise") -> Case:
    """One mode's inputs: uniform noise images (`noise`), or a photo moved by a few pixels (`photo`);
    bank weights ~ N(0, 1) (audio), 2 N(0, 1) (expression weights)."""
    variant, spec = MODES[name]
    g = torch.Generator().manual_seed(1)
    source = torch.rand(1, 3, size, size, generator=g) * 2 - 1
    moving = None
    if inputs == "photo":
        source, moving = photo(size, frames)
    dims = {"mouth": 20, "pose": 6, "exp": 10}
    drive: dict[str, torch.Tensor] = {}
    for comp, kind in spec.items():
        if kind == "video":
            noise = torch.rand(frames, 3, size, size, generator=g) * 2 - 1
            drive[comp] = noise if moving is None else moving
        elif kind == "audio":
            drive[comp] = torch.randn(frames, dims[comp], generator=g)
        else:
            drive[comp] = torch.randn(1, dims[comp], generator=g) * 2
    return Case(name, gens[variant], source, drive, frames)


@torch.no_grad()
def render_case(case: Case, chunk: int, frames: int) -> torch.Tensor:
    """Ours, as `edtalk.pipeline` renders a mode: driver videos -> coefficients in chunks (MotionResolver),
    then the source encoded once and the clip rendered in chunks (Renderer)."""
    renderer = Renderer(case.gen, chunk_size=chunk)
    motion: dict[str, torch.Tensor | None] = {}
    for comp, x in case.drive.items():
        if x.ndim == 4:
            coeffs = [renderer.coefficients(x[i : i + chunk])[comp] for i in range(0, frames, chunk)]
            motion[comp] = torch.cat(coeffs)
        else:
            motion[comp] = x[:frames] if len(x) > 1 else x.expand(frames, -1)
    chunks = renderer.stream(renderer.still(case.source), motion, frames)
    return torch.cat([c[0] for c in chunks])


@torch.no_grad()
def layer_errors(case: Case, chunk: int) -> dict[str, float]:
    """Where bf16 error comes from: each module's output in a bf16 autocast run vs the float32 run
    (relative L2 error, worst call), in forward order; plus `input 2^-9`: the float32 output's relative
    change when only the source and driver images are perturbed by 2^-9 relative noise (bf16's rounding),
    the floor any bf16 path meets on these weights and inputs."""
    from edtalk.nn.eem import EEM
    from edtalk.nn.layers import ConvLayer, ResBlock, StyledConv

    kinds = (ConvLayer, ResBlock, StyledConv, ToFlow, ToRGB, EEM)
    mods = [(n, m) for n, m in case.gen.named_modules() if isinstance(m, kinds) and "." in n]
    mods = [(n, m) for n, m in mods if not any(n.startswith(p + ".") for p, _ in mods)]  # outermost only
    runs: list[dict[str, list[torch.Tensor]]] = []
    for bf16 in (False, True):
        seen: dict[str, list[torch.Tensor]] = {}

        def keep(name: str, out: Any, seen: dict[str, list[torch.Tensor]] = seen) -> None:
            seen.setdefault(name, []).append((out[1] if isinstance(out, tuple) else out).float().clone())

        hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: keep(n, o)) for n, m in mods]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            seen["image"] = [render_case(case, chunk, case.frames)]
        for h in hooks:
            h.remove()
        runs.append(seen)

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm().clamp_min(1e-30))

    errors = {k: max(rel(b, a) for a, b in zip(v, runs[1][k], strict=True)) for k, v in runs[0].items()}
    g = torch.Generator().manual_seed(5)

    def shake(x: torch.Tensor) -> torch.Tensor:
        return x * (1 + 2**-9 * torch.randn(x.shape, generator=g)) if x.ndim == 4 else x

    drive = {k: shake(v) for k, v in case.drive.items()}
    shaken = Case(case.name, case.gen, shake(case.source), drive, case.frames)
    errors["input 2^-9"] = rel(render_case(shaken, chunk, case.frames), runs[0]["image"][0])
    return errors


def quality(test: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(worst frame PSNR in dB, worst frame mean |diff|) with pixels clamped to [-1, 1] (peak-to-peak 2)."""
    a, b = test.float().clamp(-1, 1), ref.float().clamp(-1, 1)
    mse = (a - b).pow(2).mean(dim=(1, 2, 3))
    psnr = 10 * torch.log10(4 / mse.clamp_min(1e-12))
    return float(psnr.min()), float((a - b).abs().mean(dim=(1, 2, 3)).max())


def timed(fn: Callable[[], torch.Tensor], frames: int) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn()
    return frames / (time.perf_counter() - start), out


def baseline_fps(case: Case, frames: int) -> tuple[float, torch.Tensor]:
    base = UpstreamStyle(case.gen)
    base.frame_mode(case.source, case.frame_inputs(0))  # warm-up
    return timed(
        lambda: torch.cat([base.frame_mode(case.source, case.frame_inputs(i)) for i in range(frames)]),
        frames,
    )


def measure(case: Case, default_fps: float, args: argparse.Namespace) -> dict[str, Any]:
    """Tuned baseline, ours in float32 and under bf16 autocast, for one mode (allocator already tuned)."""
    n, nb = case.frames, min(args.baseline_frames or case.frames, case.frames)
    tuned_fps, ref = baseline_fps(case, nb)
    render_case(case, args.chunk, args.chunk)  # warm-up
    ours_fps, ours = timed(lambda: render_case(case, args.chunk, n), n)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        render_case(case, args.chunk, args.chunk)
        bf16_fps, bf = timed(lambda: render_case(case, args.chunk, n), n)
    psnr, mae = quality(bf, ours)
    diff = float((ours[:nb] - ref).abs().max())
    assert math.isfinite(diff)
    return {
        "baseline_fps": round(default_fps, 3),
        "baseline_tuned_fps": round(tuned_fps, 3),
        "ours_fps": round(ours_fps, 3),
        "ratio": round(ours_fps / default_fps, 2),
        "ratio_tuned": round(ours_fps / tuned_fps, 2),
        "max_abs_diff": diff,
        "bf16_fps": round(bf16_fps, 3),
        "bf16_ratio": round(bf16_fps / default_fps, 2),
        "bf16_speedup": round(bf16_fps / ours_fps, 2),
        "bf16_psnr_vs_fp32": round(psnr, 2),
        "bf16_mae_vs_fp32": round(mae, 5),
    }


def generators(weights: str, size: int) -> dict[str, Generator]:
    """Both variants: the parity weights (official layout, 256^2), a seeded random model with tamed heads,
    or a generator file (a trained one: its variant renders every mode; lip modes without expression)."""
    if weights not in ("tame", "parity"):
        from edtalk.weights import load_generator

        gen = load_generator(weights).eval()
        return {"full": gen, "lip_pose": gen}
    if weights == "parity":
        import json as _json

        from edtalk.apps.parity import build_state_dict
        from edtalk.weights import generator_from_official

        folder = Path(__file__).resolve().parents[2] / "shared" / "upstream" / "parity"
        out = {}
        for variant, kind in (("full", "edtalk_full"), ("lip_pose", "edtalk_lip_pose")):
            recipe = _json.loads((folder / f"recipe_{kind}.json").read_text())
            out[variant] = generator_from_official(build_state_dict(recipe), kind).eval()
        return out
    torch.manual_seed(0)
    full = tame(Generator(GeneratorConfig(size=size, variant="full"))).eval()
    torch.manual_seed(0)
    lip = tame(Generator(GeneratorConfig(size=size, variant="lip_pose"))).eval()
    return {"full": full, "lip_pose": lip}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--frames", type=int, default=4, help="frames rendered (4 keeps 2 CPU cores under 3 min)"
    )
    parser.add_argument(
        "--baseline-frames", type=int, default=None, help="frames timed for (a); default --frames"
    )
    parser.add_argument("--chunk", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--mode", choices=(*MODES, "all"), default="audio_weights")
    parser.add_argument(
        "--weights", default="tame", help="tame | parity | a generator file (e.g. a stage's last.ckpt)"
    )
    parser.add_argument(
        "--inputs", choices=("noise", "photo"), default="noise", help="noise images or a moving photo"
    )
    parser.add_argument(
        "--layers", action="store_true", help="also print each module's fp32 vs bf16 error (first mode)"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gens = generators(args.weights, args.size)
    size = gens["full"].cfg.size
    names = list(MODES) if args.mode == "all" else [args.mode]
    cases = [make_case(name, gens, args.frames, size, args.inputs) for name in names]
    nb = args.baseline_frames or args.frames
    gflops_before = gemm_gflops()
    default = {c.name: baseline_fps(c, min(nb, c.frames))[0] for c in cases}  # glibc's default allocator
    tuned = tune_cpu_allocator()
    modes = {c.name: measure(c, default[c.name], args) for c in cases}
    result: dict[str, Any] = {**modes[names[0]], "mode": names[0]}
    result["gemm_gflops"] = [round(gflops_before, 1), round(gemm_gflops(), 1)]
    result["modes"] = modes
    if args.layers:
        errors = layer_errors(cases[0], args.chunk)
        result["layer_errors"] = {k: float(f"{v:.3g}") for k, v in errors.items()}
        print(f"fp32 vs bf16 autocast, relative error per module ({names[0]}):")
        for name, err in errors.items():
            print(f"  {name:34s} {err:.2e}")
    print(
        f"threads={torch.get_num_threads()} size={size} frames={args.frames} chunk={args.chunk} "
        f"weights={args.weights} inputs={args.inputs} allocator_tuned={tuned} "
        "(a shared machine: compare ratios, not fps)"
    )
    print(
        f"{'mode':16s} {'orig fps':>8s} {'tuned':>7s} {'ours':>7s} {'ratio':>6s} {'bf16':>7s} {'ratio':>6s} {'PSNR':>6s} {'MAE':>8s}"
    )
    for name, r in modes.items():
        print(
            f"{name:16s} {r['baseline_fps']:8.3f} {r['baseline_tuned_fps']:7.3f} {r['ours_fps']:7.3f} "
            f"{r['ratio']:5.2f}x {r['bf16_fps']:7.3f} {r['bf16_ratio']:5.2f}x {r['bf16_psnr_vs_fp32']:6.2f} "
            f"{r['bf16_mae_vs_fp32']:8.5f}  max |a-b| fp32 {r['max_abs_diff']:.2e}"
        )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
