"""The tensor-in/tensor-out renderer: an encoded source + per-frame bank weights -> frames, in chunks.

    renderer = Renderer(generator, chunk_size=16)
    frames, coeffs = renderer(source, drivers=video)          # video-driven reconstruction
    frames, _ = renderer(source, {"mouth": T x 20, "pose": None, "exp": T x 10}, drivers=video)

A *source* says, per chunk of frames, which `SourceEncoding` to render from and the coefficients that
fill every component whose motion is `None`:
- `StillSource`: a photo encoded once; its own coefficients broadcast over every frame;
- `FrameSource`: a video, frame t encoded when its chunk renders; each frame's own coefficients;
- `DrivenSource`: a photo encoded once; the coefficients of driver frames (video-driven reconstruction).
The keys of `motion` are the components rendered (no "exp": no expression). Q is computed once per clip;
images enter the networks channels-last by default (oneDNN / cuDNN's fast layout; the decoder follows
the source's layout). Grad mode and autocast are the caller's (`Pipeline` renders under inference mode).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import torch

from edtalk.nn.generator import COMPONENTS, Generator, SourceEncoding
from edtalk.nn.layers import at_least_float32

Motion = Mapping[str, torch.Tensor | None]  # component -> T x d, None = from the source


def pick_device(name: str | None = None) -> torch.device:
    """ "auto"/None -> CUDA, else MPS, else CPU; any other value is passed to `torch.device`."""
    if name not in (None, "auto"):
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_chunk_size(device: torch.device) -> int:
    """Frames per render call: small on CPU, big on GPU.

    On CPU a 256^2 frame's largest activations are ~17 MB; beyond 2 frames they pass glibc's 32 MiB
    mmap threshold and every call pays page faults again (measured: 2 > 1 > 4 frames per call).
    """
    return {"cuda": 32, "mps": 8}.get(device.type, 2)


def bf16_native(device: torch.device) -> bool:
    """Whether `device` has bfloat16 arithmetic units: CUDA with bf16 support, CPUs with AVX-512 BF16 or AMX."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def precision_note(device: torch.device, bf16: bool) -> str:
    """The numeric path a render takes, in words (the CLI prints it)."""
    if not bf16:
        return "float32"
    units = "bf16 units" if bf16_native(device) else "no bf16 units: emulated, slower"
    return (
        f"bfloat16 autocast ({device.type}, {units}; in float32: source encoding, flows, EEM, "
        "decoder levels up to 1/8 of the output size, bases and motion heads)"
    )


def float32(module: torch.nn.Module) -> contextlib.AbstractContextManager[Any]:
    """Autocast off on `module`'s device (its float32 parameters compute in float32)."""
    return torch.autocast(next(module.parameters()).device.type, enabled=False)


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    """bfloat16 autocast on `device` when asked, else a no-op context."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


class Source(Protocol):
    """Per chunk [start, stop): the encoding to render from and the coefficients filling `None` motion."""

    def take(self, start: int, stop: int) -> tuple[SourceEncoding, dict[str, torch.Tensor]]: ...


class Renderer:
    """Chunked rendering with one generator: encode, coefficients, and `stream` / `__call__` over a clip.

    Args:
        generator: a full or lip-pose `Generator`, already on its device and in eval mode.
        chunk_size: frames per generator call.
        channels_last: feed images channels-last (the pipeline's fast layout); False keeps the layout
            the caller gives (evaluation renders as it always has).
    """

    def __init__(self, generator: Generator, chunk_size: int = 2, channels_last: bool = True) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.generator, self.chunk_size, self.channels_last = generator, chunk_size, channels_last

    @property
    def components(self) -> tuple[str, ...]:
        """The generator's motion components: mouth, pose (and exp for the full variant)."""
        return COMPONENTS if self.generator.cfg.has_expression else COMPONENTS[:2]

    def layout(self, images: torch.Tensor) -> torch.Tensor:
        """images: B x 3 x H x W, in the layout the networks get."""
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def encode(self, source: torch.Tensor) -> SourceEncoding:
        """source: B x 3 x H x W in [-1, 1] -> its `SourceEncoding`, in float32 under bf16 autocast (a photo
        is encoded once per clip; its pyramid and latent feed every frame)."""
        with float32(self.generator):
            return self.generator.encode(at_least_float32(self.layout(source)))

    def coefficients(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """frames: B x 3 x H x W -> bank weights per component (B x d), in one generator call."""
        frames = self.layout(frames)
        w, _ = self.generator.encoder(frames, with_features=False)
        return self.navigate(w, frames)

    def navigate(self, w_a: torch.Tensor, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Bank weights of appearance latents B x S of `frames` (the motion heads, and the expression
        reader of its own when the generator has one, run in float32 under autocast)."""
        with float32(self.generator):
            return self.generator.heads(w_a.float(), at_least_float32(frames))

    def still(self, image: torch.Tensor) -> StillSource:
        """A photo (1 x 3 x H x W) as a source: encoded once, its own coefficients for every frame."""
        return StillSource(self, image)

    def stream(
        self, source: Source, motion: Motion | None, num_frames: int
    ) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """Chunks (frames n x 3 x H x W, the bank weights that drove them) of a `num_frames` clip.

        `motion=None` renders every component from the source's coefficients.
        """
        gen = self.generator
        with float32(gen):
            q = gen.basis()
        for start in range(0, num_frames, self.chunk_size):
            stop = min(start + self.chunk_size, num_frames)
            enc, own = source.take(start, stop)
            alpha = _chunk_motion(own, motion, start, stop)
            yield self._animate(enc, alpha, q), alpha

    def chunk_frames(self, source: Source, motion: Motion, q: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Frames [start, start + n) of a clip whose motion tensors (n x d, None = the source's) cover
        exactly those frames (the live renderer's unit of work); `q` = `generator.basis()`."""
        n = _motion_length(motion)
        enc, own = source.take(start, start + n)
        return self._animate(enc, _chunk_motion(own, motion, 0, n), q)

    def _animate(self, enc: SourceEncoding, alpha: dict[str, torch.Tensor], q: torch.Tensor) -> torch.Tensor:
        gen = self.generator
        with float32(gen):  # latent arithmetic in float32 under bf16 autocast: only E, G and EEM run in bf16
            # bank weights may come from a network run under autocast (audio -> mouth in bf16): float32 here
            w, e = gen.latent(enc.w_a.float(), {k: v.float() for k, v in alpha.items()}, q)
        return gen.render(enc, w, e)

    def __call__(
        self, source: torch.Tensor, motion: Motion | None = None, drivers: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Render a whole clip: tensors in, tensors out.

        Args:
            source: 1 x 3 x H x W photo in [-1, 1].
            motion: component -> T x d bank weights (None: from the drivers, else from the source).
            drivers: T x 3 x H x W frames whose coefficients fill `None` motion (video-driven).

        Returns:
            T x 3 x H x W frames and the bank weights per component (T x d) that drove them.
        """
        if drivers is not None:
            src: Source = DrivenSource(self, source, drivers)
            num_frames = len(drivers)
        else:
            src = self.still(source)
            num_frames = _motion_length(motion)
        chunks = list(self.stream(src, motion, num_frames))
        frames = torch.cat([c[0] for c in chunks])
        return frames, {k: torch.cat([c[1][k] for c in chunks]) for k in chunks[0][1]}


def _chunk_motion(
    own: dict[str, torch.Tensor], motion: Motion | None, start: int, stop: int
) -> dict[str, torch.Tensor]:
    """Bank weights of frames [start, stop): given motion sliced, `None` (or no motion) from `own`."""
    if motion is None:
        return own
    return {k: own[k] if m is None else m[start:stop] for k, m in motion.items()}


def _motion_length(motion: Motion | None) -> int:
    lengths = {len(m) for m in (motion or {}).values() if m is not None}
    if len(lengths) != 1:
        raise ValueError(
            "a render without drivers needs motion of one length T for at least one component, "
            f"got lengths {sorted(lengths) or 'none'}; give motion tensors or drivers"
        )
    return lengths.pop()


class StillSource:
    """A photo: encoded once; its own coefficients broadcast over every frame."""

    def __init__(self, renderer: Renderer, image: torch.Tensor) -> None:
        self.enc = renderer.encode(image)
        self.own = renderer.navigate(self.enc.w_a, renderer.layout(image))

    def take(self, start: int, stop: int) -> tuple[SourceEncoding, dict[str, torch.Tensor]]:
        n = stop - start
        return self.enc, {k: v.expand(n, -1) for k, v in self.own.items()}


class FrameSource:
    """A video: frame t is loaded (`load(start, stop)` -> n x 3 x H x W) and encoded when its chunk
    renders; each frame's own coefficients."""

    def __init__(self, renderer: Renderer, load: Callable[[int, int], torch.Tensor]) -> None:
        self.renderer, self.load = renderer, load

    def take(self, start: int, stop: int) -> tuple[SourceEncoding, dict[str, torch.Tensor]]:
        frames = self.renderer.layout(self.load(start, stop))
        enc = self.renderer.encode(frames)
        return enc, self.renderer.navigate(enc.w_a, frames)


class DrivenSource:
    """A photo encoded once, driven by frames: the coefficients of driver frame t fill frame t."""

    def __init__(self, renderer: Renderer, image: torch.Tensor, drivers: torch.Tensor) -> None:
        self.renderer, self.drivers = renderer, drivers
        self.enc = renderer.encode(image)

    def take(self, start: int, stop: int) -> tuple[SourceEncoding, dict[str, torch.Tensor]]:
        return self.enc, self.renderer.coefficients(self.drivers[start:stop])
