"""Audio timing and loudness as FFmpeg makes them, and `ffmpeg -r 25` frame picking, on files written by PyAV.

What is proven: a sound stream that starts 0.2 s after the picture (or before it) is padded (trimmed) so
a click lands on the frame it was recorded with; stereo becomes (L + R) / 2; the samples equal the ffmpeg
CLI's `-async 1 -ac 1 -ar 16000` output within 1 LSB (stereo AAC, 5.1 AAC, late and early starts); the 25
fps conversion picks the frames the CLI's `-r 25` picks at 20, 24, 29.97, 30 and 50 fps; our own writer's
AAC no longer plays 1024 samples late; a 0.3 s hole in the sound's timestamps is filled with silence.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from edtalk.io import ffmpeg_rate_indices, read_audio, read_video_ffmpeg_rate, write_video
from tests.avclips import FFMPEG, NO_FFMPEG, ffmpeg, ffmpeg_mono16k, frame_index, index_frames, write_clip

SPF = 640  # 16 kHz samples per 25 fps frame


def _click(n: int, at: int) -> np.ndarray:
    wav = np.zeros((1, n), np.float32)
    wav[0, at : at + 16] = 0.8
    return wav


def test_late_audio_is_padded_so_a_click_lands_on_its_frame(tmp_path: Path) -> None:
    # audio starts 0.2 s (5 frames) after the picture; the click is 0.5 s into the audio -> 0.7 s -> frame 17
    audio = _click(16000, 8000)
    clip = write_clip(tmp_path / "late.mov", index_frames(50), 25, audio, audio_start=0.2)
    wav = read_audio(clip)
    assert len(wav) == 3200 + 16000
    assert np.abs(wav[:3200]).max() == 0.0  # the 0.2 s before the sound starts is silence
    assert int(np.argmax(np.abs(wav))) == 11200 and 11200 // SPF == 17
    unaligned = read_audio(clip, align_to_video=False)  # the old reading: 5 frames early
    assert int(np.argmax(np.abs(unaligned))) // SPF == 12


def test_early_audio_is_trimmed(tmp_path: Path) -> None:
    # the picture starts 0.2 s after the sound: the click at 0.7 s of sound is 0.5 s into the video
    audio = _click(24000, 11200)
    clip = write_clip(tmp_path / "early.mov", index_frames(50), 25, audio, video_start=0.2)
    wav = read_audio(clip)
    assert len(wav) == 24000 - 3200
    assert int(np.argmax(np.abs(wav))) == 8000 and 8000 // SPF == 12


def test_stereo_is_half_the_sum_and_does_not_clip(tmp_path: Path) -> None:
    t = np.arange(16000) / 16000
    left = 0.6 * np.sin(2 * np.pi * 440 * t)
    right = -0.3 * np.sin(2 * np.pi * 440 * t) + 0.25 * np.sin(2 * np.pi * 1000 * t)
    clip = write_clip(tmp_path / "stereo.mov", index_frames(25), 25, np.stack([left, right]))
    wav = read_audio(clip)
    q = np.round(np.stack([left, right]) * 32767) / 32768  # what s16 PCM stores (swr scales by 32767)
    np.testing.assert_allclose(wav, (q[0] + q[1]) / 2, atol=2e-4)
    loud = np.full((2, 16000), 0.9) * np.sin(2 * np.pi * 220 * t)
    wav = read_audio(write_clip(tmp_path / "loud.mov", index_frames(25), 25, loud))
    assert abs(np.abs(wav).max() - 0.9) < 1e-3  # (L + R) / sqrt(2) would be 1.27: clipped


@pytest.mark.skipif(FFMPEG is None, reason=NO_FFMPEG)
@pytest.mark.parametrize(
    ("name", "channels", "rate", "audio_start", "video_start"),
    [
        ("stereo_late.mp4", 2, 44100, 0.2, 0.0),
        ("surround.mp4", 6, 48000, 0.0, 0.0),
        ("stereo_early.mp4", 2, 48000, 0.0, 0.12),
        ("mono_8k_late.mp4", 1, 8000, 0.2, 0.0),
    ],
)
def test_samples_equal_the_ffmpeg_cli(
    tmp_path: Path, name: str, channels: int, rate: int, audio_start: float, video_start: float
) -> None:
    t = np.arange(int(1.6 * rate)) / rate
    tones = np.stack([0.15 * np.sin(2 * np.pi * (300 + 170 * c) * t + c) for c in range(channels)])
    clip = write_clip(
        tmp_path / name,
        index_frames(40),
        25,
        tones,
        rate,
        "aac",
        audio_start=audio_start,
        video_start=video_start,
    )
    ref = ffmpeg_mono16k(clip, tmp_path / "ref.wav").astype(np.int64)
    # the CLI pads to the container's start, the earliest stream: when the picture starts after the sound
    # we start where the picture does (frame i pairs with sound i), i.e. the CLI's samples from there on
    ref = ref[round(video_start * 16000) :]
    ours = np.clip(np.round(read_audio(clip) * 32768), -32768, 32767).astype(np.int64)
    assert len(ours) == len(ref)
    assert np.abs(ours - ref).max() <= 1
    assert np.abs(ref).max() > 2000  # the comparison saw sound, not silence


def test_ffmpeg_rate_rule_on_30fps() -> None:
    """The documented rule: 30 -> 25 fps keeps frames until the drift reaches 0.6 tick, so 10, 16, 22... go."""
    times = [k / 30 for k in range(45)]
    picked = ffmpeg_rate_indices(times, [1 / 30] * 45)
    assert picked == [k for k in range(45) if k < 10 or (k - 10) % 6]
    nearest_earlier = [int(i * 30 / 25) for i in range(37)]  # what a timestamp rule would pick instead
    assert picked[:37] != nearest_earlier
    times50 = [k / 50 for k in range(20)]
    assert ffmpeg_rate_indices(times50, [1 / 50] * 20) == [0, 1, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    # upsampling repeats the frame after a gap: 20 fps -> frames 2, 6, 10, ... shown twice
    times20 = [k / 20 for k in range(12)]
    assert ffmpeg_rate_indices(times20, [1 / 20] * 12) == [0, 1, 2, 2, 3, 4, 5, 6, 6, 7, 8, 9, 10, 10, 11]


@pytest.mark.skipif(FFMPEG is None, reason=NO_FFMPEG)
@pytest.mark.parametrize(
    "fps", [Fraction(30), Fraction(20), Fraction(50), Fraction(30000, 1001), Fraction(24)]
)
def test_25fps_frames_equal_the_ffmpeg_cli(tmp_path: Path, fps: Fraction) -> None:
    import cv2

    clip = write_clip(tmp_path / "clip.mp4", index_frames(45), fps)
    avi, pngs = tmp_path / "video.avi", tmp_path / "frames"
    pngs.mkdir()
    # syncnet_python: `-async 1 -r 25` into .avi, then every frame out as an image (lossless codecs here)
    ffmpeg("-i", str(clip), "-async", "1", "-r", "25", "-c:v", "ffv1", str(avi))
    ffmpeg("-i", str(avi), "-threads", "1", "-f", "image2", str(pngs / "%06d.png"))
    ref = [frame_index(cv2.imread(str(p))) for p in sorted(pngs.glob("*.png"))]
    ours = [frame_index(f) for f in read_video_ffmpeg_rate(clip)]
    assert ours == ref
    assert len(ours) == pytest.approx(45 / float(fps) * 25, abs=2)


def test_written_aac_is_not_delayed_by_priming(tmp_path: Path) -> None:
    wav = _click(16000, 8000)[0]
    video = write_video(tmp_path / "out.mp4", np.zeros((25, 64, 64, 3), np.uint8), audio=wav)
    back = read_audio(video)
    assert abs(int(np.argmax(np.abs(back))) - 8000) <= 8  # AAC smears a click over a few samples
    assert len(back) >= 16000


def _clip_with_hole(path: Path) -> Path:
    """Matroska (keeps every block's timestamp), PCM: 1.5 s of tone whose second part is stamped 0.3 s late."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("pcm_s16le", rate=16000)  # every stream before the first packet
        sound.layout = "mono"
        for i, image in enumerate(index_frames(50)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(24000) / 16000)).astype(np.float32)
        for i in range(0, 24000, 1000):
            frame = av.AudioFrame.from_ndarray(tone[None, i : i + 1000].copy(), format="flt", layout="mono")
            frame.sample_rate = 16000
            frame.pts, frame.time_base = i + (4800 if i >= 8000 else 0), Fraction(1, 16000)
            for packet in sound.encode(frame):
                container.mux(packet)
        for packet in sound.encode(None):
            container.mux(packet)
    return path


def test_a_hole_in_the_sound_is_filled_with_silence(tmp_path: Path) -> None:
    clip = _clip_with_hole(tmp_path / "hole.mkv")
    wav = read_audio(clip)
    assert len(wav) == 24000 + 4800
    assert np.abs(wav[8000:12800]).max() == 0.0  # 0.5-0.8 s: the hole
    assert np.abs(wav[12800:13000]).max() > 0.2  # the rest of the tone plays from 0.8 s
    assert len(read_audio(clip, align_to_video=False)) == 24000  # raw: the stream's samples only
    if FFMPEG is not None:
        ref = ffmpeg_mono16k(clip, tmp_path / "ref.wav").astype(np.int64)
        ours = np.clip(np.round(wav * 32768), -32768, 32767).astype(np.int64)
        assert len(ref) == len(ours) and np.abs(ref - ours).max() <= 1
