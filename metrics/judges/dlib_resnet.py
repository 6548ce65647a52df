"""dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`) run by PyTorch.

The network of dlib's `dnn_face_recognition_ex.cpp` (`anet_type`), with its weights read from dlib's own
file: 150 x 150 RGB face chip minus dlib's channel means, / 256 -> conv 7x7/2 (32) + affine + ReLU +
max-pool 3/2 -> residual levels (32 x3, 64 x4, 128 x3, 256 x3, 256 x1; the first block of each level
after the first strides 2) -> global average -> 256 -> 128 (no bias). A residual block is
conv3x3(stride) + affine + ReLU + conv3x3 + affine, added to its input (average-pooled 2x2/2 in a
downsampling block) and then ReLU'd. dlib adds tensors of different shapes as if the smaller were
zero-padded at its end (channels, rows, columns): that happens where a level doubles the channels (the
pooled input has half of them) and where the pooled input is larger than the strided convolution's
output (8 px -> 4 by pooling, 3 by the unpadded 3x3 stride-2 convolution); it is done so here.

Same numbers as `dlib.face_recognition_model_v1.compute_face_descriptor` on the chip
`dlib.get_face_chip(image, shape5, 150, 0.25)` to ~1e-6 (float32, another summation order), ~10x faster on
CPU (dlib's wheel is built without BLAS), and batched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHIP = 150
PADDING = 0.25


class _Reader:
    """dlib's `serialize` format: integers as a header byte (size | 0x80 when negative) + little-endian
    bytes; strings as length + bytes; tensors (version 2) as n, k, nr, nc + raw little-endian float32."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def int(self) -> int:
        head = self.data[self.pos]
        size = head & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if head & 0x80 else value

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise ValueError(f"dlib tensor version {version} at byte {self.pos}; expected 2")
        shape = [self.int() for _ in range(4)]
        size = int(np.prod(shape))
        out = np.frombuffer(self.data, "<f4", size, self.pos).copy()
        self.pos += 4 * size
        return out


@dataclass
class _Layer:
    name: str  # con_4, affine_, relu_, max_pool_2, avg_pool_2, add_prev_, fc_2
    params: np.ndarray | None = None
    ints: tuple[int, ...] = ()


_INTS = {"con_4": 7, "max_pool_2": 6, "avg_pool_2": 6, "fc_2": 2}  # ints after the name (con: after params)
_NAMES = (*_INTS, "affine_", "relu_", "add_prev_")


def read_dlib_layers(path: Path) -> tuple[np.ndarray, list[_Layer]]:
    """(channel means R, G, B; the layers from the input on) of a dlib `anet_type` file."""
    import re

    data = path.read_bytes()
    head = b"\x01\x15input_rgb_image_sized"
    start = data.find(head)
    if start < 0:
        raise ValueError(f"{path} is not a dlib network file with an input_rgb_image_sized layer")
    reader = _Reader(data)
    reader.pos = start + len(head)
    means = np.array([reader.int() * 2.0 ** reader.int() for _ in range(3)], np.float32)
    pattern = re.compile(b"|".join(re.escape(bytes([1, len(n)]) + n.encode()) for n in _NAMES))
    layers = []
    while (found := pattern.search(data, reader.pos)) is not None:  # the next layer's name (in order)
        reader.pos = found.end()
        layers.append(_read_layer(reader, found.group()[2:].decode()))
    return means, layers


def _read_layer(reader: _Reader, name: str) -> _Layer:
    if name == "con_4":
        params = reader.tensor()
        return _Layer(name, params, tuple(reader.int() for _ in range(_INTS[name])))
    if name == "fc_2":
        ints = tuple(reader.int() for _ in range(_INTS[name]))
        return _Layer(name, reader.tensor(), ints)
    if name == "affine_":
        return _Layer(name, reader.tensor())
    if name in _INTS:
        return _Layer(name, None, tuple(reader.int() for _ in range(_INTS[name])))
    return _Layer(name)


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's `add` of two N x C x H x W tensors of different C/H/W: the smaller one zero-padded at its end."""
    if a.shape == b.shape:
        return a + b
    out = a.new_zeros(
        a.shape[0], max(a.shape[1], b.shape[1]), max(a.shape[2], b.shape[2]), max(a.shape[3], b.shape[3])
    )
    out[:, : a.shape[1], : a.shape[2], : a.shape[3]] += a
    out[:, : b.shape[1], : b.shape[2], : b.shape[3]] += b
    return out


class _Affine(nn.Module):
    """dlib's `affine` layer in CONV_MODE (a frozen batch norm): gamma * x + beta per channel."""

    def __init__(self, params: np.ndarray) -> None:
        super().__init__()
        gamma, beta = np.split(params, 2)
        self.gamma: torch.Tensor
        self.beta: torch.Tensor
        self.register_buffer("gamma", torch.from_numpy(gamma)[None, :, None, None])
        self.register_buffer("beta", torch.from_numpy(beta)[None, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta


def _conv(layer: _Layer) -> nn.Conv2d:
    """dlib `con` (filters, then one bias per filter, in its params) -> nn.Conv2d."""
    nf, nr, nc, sy, sx, py, px = layer.ints
    assert layer.params is not None
    k = (len(layer.params) - nf) // (nf * nr * nc)
    conv = nn.Conv2d(k, nf, (nr, nc), (sy, sx), (py, px))
    weight = torch.from_numpy(layer.params[: nf * k * nr * nc].reshape(nf, k, nr, nc))
    conv.load_state_dict({"weight": weight, "bias": torch.from_numpy(layer.params[nf * k * nr * nc :])})
    return conv


class _Block(nn.Module):
    """conv + affine + ReLU + conv + affine, added to the input (average-pooled 2x2/2 when `down`), ReLU."""

    def __init__(self, layers: list[_Layer]) -> None:
        super().__init__()
        names = [layer.name for layer in layers]
        self.down = names[5] == "avg_pool_2"
        if names[:5] != ["con_4", "affine_", "relu_", "con_4", "affine_"] or names[5 + self.down :] != [
            "add_prev_",
            "relu_",
        ]:
            raise ValueError(f"unexpected dlib residual block {names}")
        if self.down and layers[5].ints != (2, 2, 2, 2, 0, 0):
            raise ValueError(f"unexpected skip pooling {layers[5].ints} (expected 2x2, stride 2)")
        self.conv1, self.aff1 = _conv(layers[0]), _Affine(_params(layers[1]))
        self.conv2, self.aff2 = _conv(layers[3]), _Affine(_params(layers[4]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_padded(y, skip))


def _params(layer: _Layer) -> np.ndarray:
    assert layer.params is not None
    return layer.params


class DlibFaceResNet(nn.Module):
    """N x 150 x 150 x 3 uint8 RGB face chips -> N x 128 float32 descriptors (dlib's numbers, see above)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        means, layers = read_dlib_layers(Path(path))
        names = [layer.name for layer in layers]
        if names[:4] != ["con_4", "affine_", "relu_", "max_pool_2"] or names[-2:] != ["avg_pool_2", "fc_2"]:
            raise ValueError(
                f"{path}: not dlib's face-recognition ResNet (layers {names[:4]} ... {names[-2:]})"
            )
        self.means: torch.Tensor
        self.register_buffer("means", torch.from_numpy(means)[None, :, None, None])
        self.stem_conv, self.stem_affine = _conv(layers[0]), _Affine(_params(layers[1]))
        self.pool = layers[3].ints  # 3x3, stride 2, no padding
        blocks, start = [], 4
        for end in [i + 1 for i in range(4, len(layers) - 2) if names[i] == "add_prev_"]:
            blocks.append(_Block(layers[start : end + 1]))  # ... add_prev_, relu_
            start = end + 1
        if len(blocks) != 14 or start != len(layers) - 2:
            raise ValueError(f"{path}: expected 14 residual blocks, found {len(blocks)}")
        self.blocks = nn.ModuleList(blocks)
        outputs, inputs = layers[-1].ints
        self.fc: torch.Tensor
        self.register_buffer("fc", torch.from_numpy(_params(layers[-1]).reshape(inputs, outputs)))
        self.eval().requires_grad_(False)

    @torch.no_grad()
    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = (chips.permute(0, 3, 1, 2).float() - self.means) / 256.0  # N x 150 x 150 x 3 -> N x 3 x 150 x 150
        x = x.contiguous(memory_format=torch.channels_last)
        x = F.relu(self.stem_affine(self.stem_conv(x)))  # -> N x 32 x 72 x 72
        x = F.max_pool2d(x, self.pool[:2], self.pool[2:4], self.pool[4:6])  # -> N x 32 x 35 x 35
        for block in self.blocks:
            x = block(x)  # -> N x 256 x 2 x 2
        return x.mean(dim=(2, 3)) @ self.fc  # global average, then 256 -> 128 (no bias)
