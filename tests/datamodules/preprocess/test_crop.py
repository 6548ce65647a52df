"""Single-image template crop, similarity fitting and the video tube box."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from datamodules.preprocess.crop import (
    FaceCountError,
    apply_affine,
    crop_image,
    similarity_transform,
    template_68,
    tube_crop_box,
)
from datamodules.preprocess.landmarks import get_backend


def test_similarity_transform_recovers_a_known_one() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (10, 2))
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -3.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = scale * src @ rot.T + shift
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(apply_affine(src, m), dst, atol=1e-4)


def test_crop_image_lands_the_face_on_the_template() -> None:
    out = crop_image(data.astronaut())
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    backend = get_backend("dlib")
    points = backend.landmarks(out, backend.detect(out)[0])
    error = np.linalg.norm(points[:47] - template_68()[:47], axis=1).mean()
    assert error < 6.0, f"mean landmark distance to the template {error:.2f} px"


@pytest.mark.parametrize("faces", [0, 2])
def test_crop_image_needs_exactly_one_face(faces: int) -> None:
    face = data.astronaut()
    image = np.zeros_like(face) if faces == 0 else np.concatenate([face, face], 1)
    with pytest.raises(FaceCountError, match="no face" if faces == 0 else r"\d faces"):
        crop_image(image)


def test_tube_box_is_square_and_contains_the_moving_face() -> None:
    still = template_68()
    track = np.stack([still + np.array([dx, 0.0]) for dx in np.linspace(-20, 20, 9)])  # face slides 40 px
    x1, y1, side = tube_crop_box(track)
    assert side > 256  # the union is wider than one face: the crop grows
    assert x1 <= track[..., 0].min() and x1 + side >= track[..., 0].max()
    x1, y1, side = tube_crop_box(still[None])
    np.testing.assert_allclose([x1, y1, side], [0, 0, 256], atol=1.0)  # a still template face maps to itself


def test_face_alignment_backend_names_missing_weight_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datamodules.preprocess.landmarks import FAN_FILES, FaceAlignmentBackend

    with pytest.raises(FileNotFoundError, match=FAN_FILES[0]) as err:
        FaceAlignmentBackend(weights_dir=tmp_path)
    assert FAN_FILES[1] in str(err.value) and str(tmp_path) in str(err.value)
