"""EAT's MEAD evaluation protocol (Gan et al., ICCV 2023, scripts of github.com/yuangan/evaluation_eat),
rewritten step by step; docs/protocols.md lists each choice and how `--protocol ours` differs.

Per result video: re-encode at 25 fps with x264 (crf 23, FFmpeg's default), align and crop every frame
to 128 x 128 (`EatAligner`; frames without a face dropped), store the crops as MP4V and read them back;
the ground-truth clip goes through the same crop. Then, on the crops:
- PSNR / SSIM: scikit-image defaults on RGB uint8 pairs, lengths paired by `pair_indices`; the mean over
  all frames of all clips;
- M-LMD / F-LMD: dlib 68 points (0 upsamples) on both crops, integer points, each set centred on its
  mean; frames where either side has no face skipped; per clip sum / (valid frames x points), mean over
  clips;
- FID: 5 paired crops per clip (`fid_indices`), BGR, resized to 299 (OpenCV bilinear), torchvision's
  ImageNet InceptionV3 pool features, pooled over clips, Fréchet distance (`frechet_distance`);
- Acc_emo: Emotion-FAN on dlib face chips of the ORIGINAL result video (`EmotionFANInputs`).
"""

from __future__ import annotations

import io
import math
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from torch import nn

from edtalk.io import FPS, ffmpeg_rate_indices, frame_timing, read_video
from metrics.judges import dlib_model_file

# Rows 27..44 (nose bridge, nose, eyes) of EAT's 68-point template `base_68.npy` (code.zip), in the
# 163-px frame the crop is warped to. (`base_68_close.npy`, picked for closed eyes, holds the same points.)
EAT_TEMPLATE = np.array(
    [
        [65, 37], [65, 47], [65, 57], [66, 68], [54, 75], [60, 77], [66, 78], [71, 76], [77, 75],
        [28, 39], [35, 35], [43, 35], [50, 40], [43, 42], [34, 42], [79, 40], [86, 34], [94, 34],
    ],
    np.float32,
)  # fmt: skip
WARP_SIZE = 163
CROP_SIZE = 128  # pixels 1..128 of the warp are kept
MOUTH = slice(48, 68)
FID_FRAMES = 5
FID_SIZE = 299


# -- step 1: re-encode at 25 fps -------------------------------------------------------------------
def reencode_25fps(
    src: str | Path, dst: str | Path, crf: int = 23, decoded: DecodedVideo | None = None
) -> Path:
    """`ffmpeg -i SRC -r 25 DST.mp4` with FFmpeg's default x264 (crf 23, preset medium), through PyAV.

    Frames are taken as they are stored (a 25 fps clip passes frame for frame; other rates: the last
    frame shown at each 1/25 s tick). The pixel format is negotiated as the CLI does it: a filter graph
    whose sink takes only the formats libx264 accepts, so FFmpeg picks the least lossy one (YUV input
    keeps its format and range, yuvj* included; RGB input such as PNG or rgb24 becomes limited-range
    yuv444p, x264's High 4:4:4 Predictive). As the CLI, frames reach the encoder without the decoder's
    picture types (an all-intra source such as PNG would otherwise be encoded all-intra).
    Audio is not needed by image metrics. `decoded`: filled with the source's frames as they are decoded
    (for the other consumers of the same video).
    """
    src, dst = Path(src), Path(dst)
    with av.open(str(src)) as inp, av.open(str(dst), mode="w", format="mp4") as out:
        if not inp.streams.video:
            raise ValueError(f"{src} has no video stream")
        stream = inp.streams.video[0]
        stream.thread_type = "AUTO"
        graph = _x264_format_graph(stream)
        enc: Any = None
        frames = inp.decode(stream) if decoded is None else decoded.collect(inp.decode(stream), stream)
        for i, source in enumerate(_at_25fps(frames)):
            graph.push(source)
            frame = graph.vpull()
            if enc is None:
                enc = _x264_stream(out, frame, crf)
            if (frame.width, frame.height) != (enc.width, enc.height):  # odd size, subsampled chroma
                frame = frame.reformat(width=enc.width, height=enc.height)
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            frame.pict_type = av.video.frame.PictureType.NONE
            out.mux(enc.encode(frame))
        if enc is None:
            raise ValueError(f"{src} has no video frames")
        out.mux(enc.encode(None))
    return dst


@dataclass
class DecodedVideo:
    """Every stored frame of a video (RGB uint8), its time since the first frame and its duration (s),
    kept while `reencode_25fps` decodes the video, so that its other consumers need no decode of their
    own: `frames()` is `read_video(path, fps=None)` (Emotion-FAN's input) and `at_25fps()` is
    `read_video_ffmpeg_rate(path)` (syncnet_python's `ffmpeg -r 25`, the LSE's input), frame for frame
    (tests/metrics/test_evaluate_fast.py)."""

    images: list[np.ndarray] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)

    def collect(self, frames: Iterator[av.VideoFrame], stream: Any) -> Iterator[av.VideoFrame]:
        """Pass `stream`'s decoded frames on, keeping each one's image, time and duration as
        `edtalk.io.read_video_ffmpeg_rate` reads them."""
        for n, frame in enumerate(frames):
            self.images.append(frame.to_ndarray(format="rgb24"))
            stamp, duration = frame_timing(frame, stream, n)
            self.times.append(stamp)
            self.durations.append(duration)
            yield frame

    def frames(self) -> np.ndarray:
        """T x H x W x 3: every stored frame."""
        return np.stack(self.images)

    def at_25fps(self) -> np.ndarray:
        """T' x H x W x 3: the frames `ffmpeg -r 25` keeps (`edtalk.io.ffmpeg_rate_indices`)."""
        times = [t - self.times[0] for t in self.times]
        return np.stack([self.images[i] for i in ffmpeg_rate_indices(times, self.durations, FPS)])


def _x264_format_graph(stream: Any) -> av.filter.Graph:
    """buffer -> format(libx264's pixel formats) -> sink: FFmpeg's own choice of the encoder's format."""
    formats = "|".join(f.name for f in av.codec.Codec("libx264", "w").video_formats or [])
    graph = av.filter.Graph()
    buf = graph.add_buffer(template=stream)
    fmt = graph.add("format", f"pix_fmts={formats}")
    sink = graph.add("buffersink")
    buf.link_to(fmt)
    fmt.link_to(sink)
    graph.configure()
    return graph


def _x264_stream(out: Any, frame: av.VideoFrame, crf: int) -> Any:
    """The libx264 stream for frames like `frame` (4:2:0 / 4:2:2 need even sizes: cut to even)."""
    enc = out.add_stream("libx264", rate=Fraction(FPS))
    subsampled = frame.format.name.startswith(("yuv420", "yuvj420", "yuv422", "yuvj422", "nv"))
    w, h = frame.width, frame.height
    enc.width, enc.height = (w - w % 2, h - h % 2) if subsampled else (w, h)
    enc.pix_fmt = frame.format.name
    enc.options = {"crf": str(crf)}
    enc.thread_type = "FRAME"  # x264's frame threads, as the CLI (PyAV's default, slices, codes worse)
    if frame.color_range:  # full-range YUV (yuvj*) is flagged as such, as the CLI does
        enc.codec_context.color_range = frame.color_range
    return enc


def _at_25fps(frames: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    """Output frame i is the last source frame whose time is <= i / 25 s (all frames at 25 fps)."""
    nxt, prev, start = 0, None, 0.0
    for n, frame in enumerate(frames):
        t = float(frame.time) if frame.time is not None else n / FPS
        start = t if n == 0 else start
        t -= start
        while prev is not None and nxt / FPS < t - 1e-6:
            yield prev
            nxt += 1
        prev = frame
    if prev is not None:
        yield prev


# -- step 2: face alignment and 128-px crops --------------------------------------------------------
def bgr2grey_of_rgb(frame: np.ndarray) -> np.ndarray:
    """OpenCV's BGR->grey applied to an RGB frame, as EAT's scripts do (red and blue weights swapped)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_BGR2GRAY)


class EatAligner:
    """dlib HOG detector + 68-point predictor: EAT's landmarks, aligned crops and LMD landmarks."""

    def __init__(self) -> None:
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(dlib_model_file("shape_predictor_68_face_landmarks.dat")))

    def landmarks(self, frame: np.ndarray, upsample: int) -> np.ndarray | None:
        """68 x 2 integer points of the first detected face on the grey image, None without a face."""
        grey = bgr2grey_of_rgb(frame)
        rects = self.detector(grey, upsample)
        if not len(rects):
            return None
        shape = self.predictor(grey, rects[0])
        return np.array([(p.x, p.y) for p in shape.parts()], np.int64)

    def crop(self, frame: np.ndarray) -> np.ndarray | None:
        """RGB uint8 frame -> 128 x 128 x 3 aligned crop (None when no face is found)."""
        from skimage.transform import SimilarityTransform, warp

        lmk = self.landmarks(frame, 1)
        if lmk is None:
            return None
        tform = SimilarityTransform()
        with warnings.catch_warnings():  # `estimate` is what the reference calls (deprecated in skimage 0.26)
            warnings.simplefilter("ignore", FutureWarning)
            tform.estimate(EAT_TEMPLATE, lmk[27:45].astype(np.float32))
        dst = warp(frame, tform, output_shape=(WARP_SIZE, WARP_SIZE))  # bilinear, [0, 1] floats
        return np.array(dst * 255, dtype=np.uint8)[1 : CROP_SIZE + 1, 1 : CROP_SIZE + 1]

    def crops(self, frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Crops of the frames that have a face: K x 128 x 128 x 3 uint8 (K may be 0)."""
        out = [c for c in (self.crop(f) for f in frames) if c is not None]
        return np.stack(out) if out else np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8)


def mp4v_roundtrip(crops: np.ndarray, folder: str | Path | None = None) -> np.ndarray:
    """Write crops as EAT does (OpenCV MP4V, 25 fps) and read them back as RGB (the lossy step it keeps)."""
    import cv2

    if len(crops) == 0:
        return crops
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = str(Path(tmp) / "crops.mp4")
        h, w = crops.shape[1:3]
        writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*"mp4v"), FPS, (w, h))
        if not writer.isOpened():
            raise RuntimeError("OpenCV cannot write MP4V video (opencv-python built without FFmpeg?)")
        for crop in crops:
            writer.write(np.ascontiguousarray(crop[..., ::-1]))  # RGB -> the BGR OpenCV writes
        writer.release()
        return read_video(path, fps=None)


# -- step 3: pairing and the metrics -----------------------------------------------------------------
def pair_indices(n: int, length: int) -> np.ndarray:
    """Indices of `length` frames out of `n`: int(linspace(0, n, length, endpoint=False))."""
    return np.linspace(0, n, length, endpoint=False).astype(np.int32)


def paired(fake: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both clips resampled to the shorter length (the longer one by `pair_indices`)."""
    length = min(len(fake), len(gt))
    return fake[pair_indices(len(fake), length)], gt[pair_indices(len(gt), length)]


def psnr_ssim_frames(fake: np.ndarray, gt: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-frame PSNR and SSIM of paired crops (scikit-image defaults, RGB uint8, channel_axis=-1)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    psnrs, ssims = [], []
    for f, g in zip(*paired(fake, gt)):
        with np.errstate(divide="ignore"):  # identical frames: inf, as the reference
            psnrs.append(float(peak_signal_noise_ratio(g, f)))
        ssims.append(float(structural_similarity(g, f, channel_axis=-1)))
    return psnrs, ssims


def _centred_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Sum over points of the distance between two point sets, each centred on its own mean."""
    a = a.astype(np.float64) - a.astype(np.float64).mean(0)
    b = b.astype(np.float64) - b.astype(np.float64).mean(0)
    return float(np.sqrt(((a - b) ** 2).sum(1)).sum())


def lmd_clip(
    fake_lmk: Sequence[np.ndarray | None], gt_lmk: Sequence[np.ndarray | None]
) -> tuple[float, float] | None:
    """(M-LMD, F-LMD) of one clip from paired per-frame landmarks (None: no face); None if no valid frame."""
    mouth = face = 0.0
    valid = 0
    for p, g in zip(fake_lmk, gt_lmk):
        if p is None or g is None:
            continue
        mouth += _centred_distance(p[MOUTH], g[MOUTH])
        face += _centred_distance(p, g)
        valid += 1
    if not valid:
        return None
    return mouth / (valid * 20), face / (valid * 68)


def fid_indices(length: int, k: int = FID_FRAMES) -> np.ndarray:
    """The frames of a clip that FID sees: int(linspace(0, L, min(L, 5), endpoint=False))."""
    return np.linspace(0, length, min(length, k), endpoint=False).astype(np.int32)


def fid_inputs(crops_rgb: np.ndarray) -> torch.Tensor:
    """K x H x W x 3 RGB uint8 -> K x 3 x 299 x 299 float32 in [0, 1]: BGR, /255, OpenCV bilinear."""
    import cv2

    out = [cv2.resize(c[..., ::-1].astype(np.float32) / 255, (FID_SIZE, FID_SIZE)) for c in crops_rgb]
    return torch.from_numpy(np.stack(out).transpose(0, 3, 1, 2).copy())  # K x 299 x 299 x 3 -> K x 3 x ...


def frechet_distance(act1: np.ndarray, act2: np.ndarray) -> float:
    """FID of two activation sets (N x D each): EAT's formula (np.cov, trace of sqrtm(S1 S2)), computed stably.

    tr sqrtm(S1 S2) is the sum of the square roots of the eigenvalues of S1 S2. With the centred,
    1/sqrt(N-1)-scaled activations C1, C2 (S = C^T C) that is the nuclear norm of C1 C2^T, which we use
    when a side has at most D samples (S1 S2 is then singular, where scipy's sqrtm warns and drifts);
    otherwise the eigenvalues of S2^1/2 S1 S2^1/2 (symmetric). Same value as EAT's scipy `sqrtm` where
    that one is accurate (tests/metrics/test_eat_protocol.py), and seconds instead of minutes for D = 2048.
    """
    a1, a2 = np.asarray(act1, np.float64), np.asarray(act2, np.float64)
    if len(a1) < 2 or len(a2) < 2:
        raise ValueError(f"FID needs at least 2 images per side, got {len(a1)} and {len(a2)}")
    mu1, mu2 = a1.mean(0), a2.mean(0)
    c1, c2 = (a1 - mu1) / math.sqrt(len(a1) - 1), (a2 - mu2) / math.sqrt(len(a2) - 1)
    if min(len(c1), len(c2)) <= a1.shape[1]:
        tr_covmean = float(np.linalg.svd(c1 @ c2.T, compute_uv=False).sum())
    else:
        w, v = np.linalg.eigh(c2.T @ c2)
        root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        tr_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh(root @ (c1.T @ c1) @ root), 0, None)).sum())
    diff = mu1 - mu2
    return float(diff.dot(diff) + (c1**2).sum() + (c2**2).sum() - 2 * tr_covmean)


# -- Emotion-FAN inputs --------------------------------------------------------------------------
def _jpeg_roundtrip_bgr(bgr: np.ndarray) -> np.ndarray:
    """cv2.imwrite + cv2.imread of a .jpg (OpenCV's default quality 95)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr))
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    out: np.ndarray = np.asarray(cv2.imdecode(buf, cv2.IMREAD_COLOR))
    return out


class EmotionFANInputs:
    """Frames of a video -> Emotion-FAN input, as EAT's emotion test prepares them.

    Each frame is stored as a JPEG (OpenCV), read back, searched by dlib's HOG detector (1 upsample, RGB);
    the first face's 5-point shape gives `dlib.get_face_chip(size=224, padding=0.25)`, stored as a JPEG
    (OpenCV) and read with PIL, then `Resize(224)` + `ToTensor` (values in [0, 1], no mean/std).
    Frames without a face are dropped (the reference retries those with dlib's CNN detector and three
    histogram equalisations; we do not).
    """

    def __init__(self) -> None:
        import dlib

        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape5 = dlib.shape_predictor(str(dlib_model_file("shape_predictor_5_face_landmarks.dat")))

    def chip(self, frame_rgb: np.ndarray) -> np.ndarray | None:
        """224 x 224 x 3 RGB face chip of one frame after the JPEG round trip (None: no face)."""
        rgb = np.ascontiguousarray(_jpeg_roundtrip_bgr(frame_rgb[..., ::-1])[..., ::-1])
        dets = self.detector(rgb, 1)
        if not len(dets):
            return None
        return np.asarray(self._dlib.get_face_chip(rgb, self.shape5(rgb, dets[0]), size=224, padding=0.25))

    def __call__(self, frames_rgb: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """T x H x W x 3 uint8 -> K x 3 x 224 x 224 float32 (K frames with a face)."""
        import cv2
        from PIL import Image
        from torchvision import transforms

        to_tensor = transforms.Compose([transforms.Resize(224), transforms.ToTensor()])
        out = []
        for frame in frames_rgb:
            chip = self.chip(frame)
            if chip is None:
                continue
            _, buf = cv2.imencode(".jpg", np.ascontiguousarray(chip[..., ::-1]))
            out.append(to_tensor(Image.open(io.BytesIO(buf.tobytes())).convert("RGB")))
        return torch.stack(out) if out else torch.zeros(0, 3, 224, 224)


# -- clip labels ---------------------------------------------------------------------------------
_FAN_PREFIX = {"hap": 0, "ang": 1, "dis": 2, "fea": 3, "sad": 4, "neu": 5, "sur": 6, "con": 7}


def emotion_fan_label(clip_id: str) -> int:
    """Emotion-FAN class of a MEAD clip from its name (our `W015#sad#level_3#005` or EAT's
    `W015_W015_sad_3_005`): the emotion's first three letters, as EAT's test reads them."""
    parts = clip_id.split("#") if "#" in clip_id else clip_id.split("_")
    for part in parts[1:]:
        if part[:3].lower() in _FAN_PREFIX and not part[:1].isdigit():
            return _FAN_PREFIX[part[:3].lower()]
    raise ValueError(
        f"cannot read a MEAD emotion from clip name {clip_id!r}; expected e.g. 'W015#sad#level_3#005'"
    )


# -- one method's scores ---------------------------------------------------------------------------
@dataclass
class EatJudges:
    """What the EAT protocol runs: the aligner (always), and the networks whose files were found."""

    aligner: EatAligner
    inception: nn.Module | None = None
    emotion_fan: nn.Module | None = None
    fan_inputs: EmotionFANInputs | None = None
    files: dict[str, Path] = field(default_factory=dict)  # judge files (keys of the ground-truth cache)
    # Emotion-FAN on channels-last batches (with `PresetScorer`: its batch norms folded, `EmotionFAN.fused`;
    # logits agree to ~1e-7; False: as before)
    fast: bool = False


@dataclass
class EatScorer:
    """Accumulates EAT's PSNR/SSIM (per frame), LMD (per clip), FID activations and Emotion-FAN hits."""

    judges: EatJudges
    workdir: Path | None = None
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    lmd: list[tuple[float, float]] = field(default_factory=list)
    fid_fake: list[np.ndarray] = field(default_factory=list)
    fid_real: list[np.ndarray] = field(default_factory=list)
    emotion_hits: list[bool] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    part: dict[str, Any] = field(default_factory=dict)  # the last clip's contribution (see `restore`)

    def gt_crops(self, gt: Any) -> np.ndarray:
        """The ground truth's aligned crops after the MP4V round trip (computed once per clip)."""
        import cv2
        import dlib

        from metrics.clips import gt_cached

        kind = f"eat-crops-dlib{dlib.__version__}-cv{cv2.__version__}"
        files = [dlib_model_file("shape_predictor_68_face_landmarks.dat")]
        crops = gt_cached(
            gt, kind, files, lambda: mp4v_roundtrip(self.judges.aligner.crops(gt.frames), self.workdir)
        )
        gt.cache["eat_crops"] = crops
        return crops

    def result_crops(self, video: Path, decoded: DecodedVideo | None = None) -> np.ndarray:
        """A result video re-encoded at 25 fps, cropped and MP4V round-tripped (`decoded`: filled with
        the video's frames on the way)."""
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            encoded = reencode_25fps(video, Path(tmp) / "25fps.mp4", decoded=decoded)
            frames = read_video(encoded, fps=None)
        return mp4v_roundtrip(self.judges.aligner.crops(frames), self.workdir)

    @torch.no_grad()
    def add(self, gt: Any, video: Path, decoded: DecodedVideo | None = None) -> dict[str, Any]:
        """Score one result video against its ground-truth clip; returns the per-clip row.

        `decoded`: an empty `DecodedVideo` to keep the video's frames from the re-encode's decode, for
        Emotion-FAN here and for the caller (the LSE); None: each step decodes the file itself."""
        fake, real = self.result_crops(video, decoded), self.gt_crops(gt)
        row: dict[str, Any] = {"clip_id": gt.clip_id, "frames": min(len(fake), len(real))}
        self.part = {}
        if len(fake) and len(real):
            psnrs, ssims = psnr_ssim_frames(fake, real)
            self.part.update(psnr=psnrs, ssim=ssims)
            row.update(psnr=float(np.mean(psnrs)), ssim=float(np.mean(ssims)))
            row.update(self._lmd(fake, real, gt))
            if self.judges.inception is not None:
                self._fid(fake, real, gt)
        elif not len(fake):
            row["note"] = "no face found in the result video (EAT's image metrics skip it)"
        if self.judges.emotion_fan is not None:
            row.update(self._emotion(gt.clip_id, video, decoded))
        self.restore(self.part)
        self.rows.append(row)
        return row

    def restore(self, part: dict[str, Any]) -> None:
        """Add one clip's contribution (`part` after `add`, or read back from disk) to the totals."""
        self.psnr += [float(v) for v in part.get("psnr", [])]
        self.ssim += [float(v) for v in part.get("ssim", [])]
        if part.get("lmd") is not None:
            self.lmd.append((float(part["lmd"][0]), float(part["lmd"][1])))
        if part.get("fid_fake") is not None:
            self.fid_fake.append(np.asarray(part["fid_fake"]))
            self.fid_real.append(np.asarray(part["fid_real"]))
        if part.get("emotion_hit") is not None:
            self.emotion_hits.append(bool(part["emotion_hit"]))

    def gt_landmarks(self, gt: Any, real: np.ndarray) -> list[np.ndarray | None]:
        """dlib landmarks (0 upsamples) of every ground-truth crop, None without a face: computed once per
        clip and cached on disk (a ground-truth crop's landmarks do not depend on the method)."""
        import dlib

        from metrics.clips import gt_cached

        def compute() -> np.ndarray:  # K x 69 x 2: 68 points, then (found, 0)
            out = np.zeros((len(real), 69, 2), np.int64)
            for k, crop in enumerate(real):
                lmk = self.judges.aligner.landmarks(crop, 0)
                if lmk is not None:
                    out[k, :68], out[k, 68, 0] = lmk, 1
            return out

        files = [dlib_model_file("shape_predictor_68_face_landmarks.dat")]
        marks = gt_cached(gt, f"eat-gt-landmarks-dlib{dlib.__version__}", files, compute)
        return [m[:68] if m[68, 0] else None for m in marks]

    def _lmd(self, fake: np.ndarray, real: np.ndarray, gt: Any) -> dict[str, float]:
        marks = self.judges.aligner.landmarks
        length = min(len(fake), len(real))
        gt_marks = self.gt_landmarks(gt, real)
        fake_lmk, gt_lmk = [], []
        for a, k in zip(fake[pair_indices(len(fake), length)], pair_indices(len(real), length)):
            p = marks(a, 0)  # as the reference: the ground truth counts only where the result has a face
            fake_lmk.append(p)
            gt_lmk.append(gt_marks[k] if p is not None else None)
        value = lmd_clip(fake_lmk, gt_lmk)
        if value is None:
            return {}
        self.part["lmd"] = value
        return {"m_lmd": value[0], "f_lmd": value[1]}

    def _fid(self, fake: np.ndarray, real: np.ndarray, gt: Any) -> None:
        f, g = paired(fake, real)
        idx = fid_indices(len(f))
        net = self.judges.inception
        assert net is not None
        self.part["fid_fake"] = net(fid_inputs(f[idx])).numpy()
        file = self.judges.files.get("inception_imagenet")
        if file is None:  # no file to key the cache by
            self.part["fid_real"] = net(fid_inputs(g[idx])).numpy()
            return
        import cv2
        import dlib

        from metrics.clips import gt_cached

        # the ground truth's frames FID sees depend only on the paired length: cached per length
        kind = f"eat-fid-real-{len(g)}of{len(real)}-dlib{dlib.__version__}-cv{cv2.__version__}"
        compute = lambda: net(fid_inputs(g[idx])).numpy()  # noqa: E731
        self.part["fid_real"] = gt_cached(gt, kind, [file], compute)

    def _emotion(self, clip_id: str, video: Path, decoded: DecodedVideo | None = None) -> dict[str, Any]:
        fan, prep = self.judges.emotion_fan, self.judges.fan_inputs
        assert fan is not None and prep is not None
        faces = prep(decoded.frames() if decoded is not None else read_video(video, fps=None))
        if not len(faces):
            return {}
        if self.judges.fast:
            faces = faces.contiguous(memory_format=torch.channels_last)
        pred = int(fan(faces).argmax())
        self.part["emotion_hit"] = pred == emotion_fan_label(clip_id)
        from metrics.judges.emotion_fan import EMOTION_FAN_LABELS

        return {"emotion_fan_pred": EMOTION_FAN_LABELS[pred]}

    def summary(self) -> dict[str, float]:
        """Protocol values: psnr, ssim (frame means), m_lmd, f_lmd (clip means), fid, emotion_fan_acc (%)."""
        return self.fold(self.judges.inception is not None, self.judges.emotion_fan is not None)

    def fold(self, with_fid: bool, with_fan: bool) -> dict[str, float]:
        """`summary` from the totals alone (FID / Acc_emo reported when their judge ran)."""
        out: dict[str, float] = {}
        if self.psnr:
            out.update(psnr=float(np.mean(self.psnr)), ssim=float(np.mean(self.ssim)))
        if self.lmd:
            out.update(
                m_lmd=float(np.mean([m for m, _ in self.lmd])), f_lmd=float(np.mean([f for _, f in self.lmd]))
            )
        if with_fid:
            fake, real = (
                np.concatenate(self.fid_fake or [np.zeros((0, 2048))]),
                np.concatenate(self.fid_real or [np.zeros((0, 2048))]),
            )
            out["fid"] = frechet_distance(fake, real) if len(fake) >= 2 else math.nan
        if with_fan:
            out["emotion_fan_acc"] = (
                100.0 * float(np.mean(self.emotion_hits)) if self.emotion_hits else math.nan
            )
        return out
