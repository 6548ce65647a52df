"""L1 inside a box per sample: the mouth-region term of the visual stages (`model.loss.mouth`).

At 64² the mouth is under 1 % of the pixels, so a whole-image L1 is nearly blind to it: a generator
that renders every frame with one average mouth loses almost nothing (measured on the built-in data:
22 dB video-driven PSNR after 3000 reconstruct steps with no coefficient group explaining the mouth
opening, R² <= 0). The original recipe's pretrained VGG pyramid gives the mouth its weight at 256²;
CPU runs without a pretrained VGG use this term instead (experiments/demo/). Weight 0 (the default)
skips it, as the original trainers do.
"""

from __future__ import annotations

import torch


def box_mask(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """B x 1 x H x W float mask of the pixels whose centres lie in each box (x1, y1, x2, y2, pixels)."""
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype) + 0.5
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype) + 0.5
    x1, y1, x2, y2 = (boxes[:, i, None] for i in range(4))  # -> B x 1 each
    inside_y = (ys >= y1) & (ys < y2)  # -> B x H
    inside_x = (xs >= x1) & (xs < x2)  # -> B x W
    return (inside_y[:, :, None] & inside_x[:, None, :]).unsqueeze(1).to(boxes.dtype)


def region_l1(pred: torch.Tensor, target: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of each sample's mean |pred - target| inside its box (B x 3 x H x W, B x 4).

    A box that covers no pixel centre contributes 0 (its sample has nothing to weigh)."""
    if boxes.shape != (pred.shape[0], 4):
        raise ValueError(
            f"boxes must be B x 4 (x1, y1, x2, y2) for {pred.shape[0]} images, got {tuple(boxes.shape)}"
        )
    mask = box_mask(boxes.to(pred.dtype), pred.shape[-2], pred.shape[-1])
    err = (pred - target).abs().mean(1, keepdim=True)
    per_sample = (err * mask).sum((1, 2, 3)) / mask.sum((1, 2, 3)).clamp_min(1.0)
    return per_sample.mean()
