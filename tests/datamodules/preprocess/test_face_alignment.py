"""The face_alignment backend (S3FD + FAN, as upstream) loads from a local folder, never the hub or the web.

The official weights are not available here, so the folder holds a random-init S3FD (the package's own
network class) and a TorchScript "FAN" whose heatmaps peak on the 68-point crop template: the
landmarks that come back must then be that template mapped into the image by the package's crop
transform (a similarity), inside the face box.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

face_alignment = pytest.importorskip("face_alignment")

from datamodules.preprocess.crop import similarity_transform, template_68  # noqa: E402
from datamodules.preprocess.landmarks import FAN_FILES, FaceAlignmentBackend  # noqa: E402


class TemplateFAN(torch.nn.Module):
    """B x 3 x 256 x 256 -> B x 68 x 64 x 64 heatmaps with one peak per landmark at fixed grid points."""

    def __init__(self, points: torch.Tensor) -> None:
        super().__init__()
        ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
        d2 = (xs[None] - points[:, 0, None, None]) ** 2 + (ys[None] - points[:, 1, None, None]) ** 2
        self.register_buffer("heatmaps", torch.exp(-d2 / 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heatmaps.expand(x.shape[0], -1, -1, -1) + 0 * x.mean()


@pytest.fixture(scope="module")
def fan_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    from face_alignment.detection.sfd.net_s3fd import s3fd

    folder = tmp_path_factory.mktemp("fan")
    torch.manual_seed(0)
    torch.save(s3fd().state_dict(), folder / FAN_FILES[0])
    grid = np.round(template_68() / 4)  # the template in FAN's 64² heatmap grid, on integer cells
    torch.jit.save(
        torch.jit.script(TemplateFAN(torch.tensor(grid, dtype=torch.float32))), str(folder / FAN_FILES[1])
    )
    return folder, grid


def test_backend_reads_local_files_only(
    fan_dir: tuple[Path, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import face_alignment.utils
    import torch.hub
    from skimage.data import astronaut

    folder, grid = fan_dir

    def no_download(url: str, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(face_alignment.utils, "download_url_to_file", no_download)
    empty_hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(empty_hub))  # nothing there: files must come from `folder`
    backend = FaceAlignmentBackend(weights_dir=folder)
    assert torch.hub.get_dir() == str(empty_hub)  # restored after construction
    assert not (empty_hub / "checkpoints").exists()

    image = astronaut()  # 512 x 512 x 3
    boxes = backend.detect(image)
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert np.all(np.diff(area) <= 0)  # largest first

    box = np.array([170.0, 40.0, 330.0, 220.0], np.float32)  # the astronaut's face
    points = backend.landmarks(image, box)
    assert points.shape == (68, 2) and points.dtype == np.float32
    matrix = similarity_transform(grid * 4, points)  # crop pixels -> image pixels
    mapped = grid * 4 @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - points).max() < 2.0  # the template came back as one similarity image of itself
    side = box[2] - box[0]
    assert np.all(points >= box[:2] - side * 0.5) and np.all(points <= box[2:] + side * 0.5)
    # FAN's 256² crop spans 200 * (w + h) / 195 image pixels (S3FD's reference scale): the box sets the scale
    expected = 200 * ((box[2] - box[0]) + (box[3] - box[1])) / 195 / 256
    assert abs(np.linalg.norm(matrix[:, 0]) / expected - 1) < 0.02


def test_preprocess_stops_once_with_the_missing_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from skimage.data import astronaut

    from edtalk.cli import main as cli
    from edtalk.io import write_video

    raw = tmp_path / "raw"
    raw.mkdir()
    write_video(raw / "a.mp4", np.stack([astronaut()[::2, ::2]] * 30), audio=np.zeros(19200, np.float32))
    args = [
        "preprocess",
        "--input",
        str(raw),
        "--out",
        str(tmp_path / "out"),
        "--workers",
        "1",
        "--no-progress",
    ]
    assert cli([*args, "--backend", "face_alignment", "--backend-weights", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert FAN_FILES[0] in err and FAN_FILES[1] in err and "nowhere" in err
    assert not (tmp_path / "out" / "index.json").exists()  # nothing processed, nothing half-written
