"""The VGG19 feature extractor of the perceptual loss (torchvision's `features[:30]`, relu1_1..relu5_1).

A plain network (its release file loads through `edtalk.weights`, kind `vgg19`); the loss that taps it is
`edtalk.losses.perceptual`.
"""

from __future__ import annotations

from torch import nn

VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILE}"
# torchvision VGG19 "E" layout up to conv5_1; "M" = max-pool.
_LAYOUT: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
)


def vgg19_features(width: float = 1.0) -> nn.Sequential:
    """torchvision's VGG19 `features[:30]` (same indices, so its state dict loads), channels scaled by width."""
    layers: list[nn.Module] = []
    in_ch = 3
    for item in _LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        out_ch = max(1, round(int(item) * width))
        layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True)]
        in_ch = out_ch
    return nn.Sequential(*layers)
