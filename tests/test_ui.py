"""`edtalk ui`: page logic without a browser, and the served page driven by Playwright + Debian's chromium."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from edtalk import io

pytest.importorskip(
    "gradio", reason="the ui extra is not installed: pip install -c constraints.txt -e '.[ui]'"
)

from edtalk.apps.ui import DEMO_MODEL, NO_EMOTION, NO_EXPRESSION, Request, Studio, UIConfig, emotion_spec

ROOT = Path(__file__).resolve().parents[1]
AUDIO_SECONDS = 1.2  # -> 30 frames at 25 fps


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A photo of one face (skimage's astronaut), a blank photo, and a short speech-like tone."""
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("media")
    Image.fromarray(data.astronaut()).save(root / "astronaut.png")
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(root / "blank.png")
    t = np.arange(int(AUDIO_SECONDS * io.SAMPLE_RATE)) / io.SAMPLE_RATE
    wav = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    io.write_wav(root / "speech.wav", wav.astype(np.float32))
    return {"photo": root / "astronaut.png", "blank": root / "blank.png", "audio": root / "speech.wav"}


def test_import_does_no_work() -> None:
    code = (
        "import os, sys, edtalk.apps.ui, edtalk.commands.ui\n"
        "heavy = [m for m in ('gradio', 'torch', 'playwright') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert 'GRADIO_ANALYTICS_ENABLED' not in os.environ\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_ANALYTICS_ENABLED"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)


@pytest.mark.parametrize(
    ("args", "spec"),
    [
        (("happy", 1.0, NO_EMOTION, 0.0), "happy:1"),
        (("happy", 1.2, "sad", 0.25), "happy:0.9,sad:0.3"),
        (("angry", 0.5, "angry", 0.5), "angry:0.5"),  # mixing with itself is no mix
        ((NO_EMOTION, 1.0, "sad", 0.5), None),
        ((NO_EXPRESSION, 1.0, NO_EMOTION, 0.0), None),
    ],
)
def test_emotion_spec(args: tuple, spec: str | None) -> None:
    assert emotion_spec(*args) == spec


def test_emotion_spec_mixes_weights() -> None:
    from edtalk.emotions import emotion_weights

    spec = emotion_spec("happy", 1.5, "fear", 0.4)
    assert spec is not None
    expected = 0.9 * emotion_weights("happy") + 0.6 * emotion_weights("fear")
    torch.testing.assert_close(emotion_weights(spec), expected)
    with pytest.raises(ValueError, match="mix share"):
        emotion_spec("happy", 1.0, "sad", 1.5)


def test_cli_registers_ui(tmp_path: Path) -> None:
    from edtalk.cli import build_parser

    gfpgan = tmp_path / "g.pth"
    gfpgan.write_bytes(b"x")  # the CLI checks input files while parsing
    args = build_parser().parse_args(["ui", "--host", "127.0.0.1", "--port", "8123", "--gfpgan", str(gfpgan)])
    assert (args.host, args.port, args.gfpgan, args.checkpoint) == ("127.0.0.1", 8123, gfpgan, [])
    assert args.func.__module__ == "edtalk.commands.ui"


def test_model_choices() -> None:
    assert UIConfig().model_choices() == [DEMO_MODEL]
    assert UIConfig(checkpoints=(Path("EDTalk.pt"),)).model_choices() == ["EDTalk.pt"]
    assert UIConfig(checkpoints=(Path("a.pt"),), demo=True).model_choices() == ["a.pt", DEMO_MODEL]


def test_preview_crops_one_face_and_explains_failures(tmp_path: Path, media: dict[str, Path]) -> None:
    studio = Studio(UIConfig(out_dir=tmp_path))
    face, note = studio.preview(str(media["photo"]))
    assert face is not None and face.shape == (256, 256, 3) and face.dtype == np.uint8
    assert "Face found" in note
    face, note = studio.preview(str(media["blank"]))
    assert face is None and "Auto-crop failed" in note and "turn auto-crop off" in note
    raw, note = studio.preview(str(media["blank"]), crop=False)
    assert raw is not None and raw.shape == (200, 200, 3)


def test_studio_renders_demo_with_emotion_mix_and_face_sr(tmp_path: Path, media: dict[str, Path]) -> None:
    studio = Studio(UIConfig(out_dir=tmp_path / "out"))
    short = tmp_path / "short.wav"
    io.write_wav(short, io.read_audio(media["audio"])[: 8 * 640])  # 8 frames keep face SR quick
    req = Request(str(media["photo"]), str(short), emotion="happy", mix_with="sad", mix=0.3, face_sr=True)
    result, summary = studio.generate(req)
    info = io.probe_video(result.path)
    assert result.path.parent == tmp_path / "out"
    assert (info.width, info.height, info.num_frames, info.has_audio) == (512, 512, 8, True)
    assert "8 frames" in summary and "512x512" in summary
    plain, _ = studio.generate(Request(str(media["photo"]), str(short), emotion=NO_EXPRESSION))
    assert io.probe_video(plain.path).width == 64  # the demo generator's own size


def test_face_sr_without_weights_is_a_clear_error(tmp_path: Path, media: dict[str, Path]) -> None:
    from edtalk import weights
    from edtalk.config import GeneratorConfig
    from edtalk.nn.generator import Generator

    ckpt = weights.save_checkpoint(
        Generator(GeneratorConfig.tiny("lip_pose")), "generator", tmp_path / "g.pt"
    )
    studio = Studio(UIConfig(checkpoints=(ckpt,), out_dir=tmp_path))
    with pytest.raises(ValueError, match=r"GFPGANv1\.4\.pth.*edtalk ui --gfpgan"):
        studio.restorer(demo=False)
    with pytest.raises(ValueError, match="upload a source photo"):
        studio.generate(Request(None, model=str(ckpt)))
    with pytest.raises(ValueError, match="unknown model"):
        studio.generate(Request(str(media["photo"]), model=DEMO_MODEL))  # not offered with a checkpoint


def test_studio_streams_live_frames_then_the_mp4(tmp_path: Path, media: dict[str, Path]) -> None:
    studio = Studio(UIConfig(out_dir=tmp_path / "out"))
    short = tmp_path / "short.wav"
    io.write_wav(short, io.read_audio(media["audio"])[: 12 * 640])  # 12 frames, read at real time
    yields = list(studio.live(str(media["photo"]), str(short), "happy"))
    *streaming, (last, path, summary) = yields
    assert streaming and all(v is None and s.startswith("live:") for _, v, s in streaming)
    assert all(f.shape == (256, 256, 3) and f.dtype == np.uint8 for f, _, _ in streaming)  # 64² x 4
    assert last is streaming[-1][0] and path is not None and Path(path).parent == tmp_path / "out"
    info = io.probe_video(path)
    assert (info.num_frames, info.fps, info.has_audio) == (12, 25.0, True)
    assert "12 frames streamed" in summary and "real-time factor" in summary


def test_live_explains_missing_inputs(tmp_path: Path, media: dict[str, Path]) -> None:
    from edtalk import weights
    from edtalk.config import GeneratorConfig
    from edtalk.nn.generator import Generator

    studio = Studio(UIConfig(out_dir=tmp_path))
    with pytest.raises(ValueError, match="upload a source photo and speech"):
        next(studio.live(str(media["photo"]), None))
    ckpt = weights.save_checkpoint(Generator(GeneratorConfig.tiny("full")), "generator", tmp_path / "g.pt")
    studio = Studio(UIConfig(checkpoints=(ckpt,), out_dir=tmp_path))
    with pytest.raises(ValueError, match=r"needs Audio2Lip.*--audio2lip"):
        next(studio.live(str(media["photo"]), str(media["audio"]), model=str(ckpt)))


# -- the served page in a real browser -----------------------------------------------------------
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    path = os.environ.get("EDTALK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.skip("no chromium browser: apt-get install -y chromium (or set EDTALK_CHROMIUM)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ProxyRecorder:
    """A local HTTP(S) proxy that records and refuses every request: the server's outbound calls."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.requests: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    self.requests.append(conn.recv(1024).split(b"\r\n")[0].decode(errors="replace"))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, ProxyRecorder]]:
    """`edtalk ui` in a subprocess on a free port, its outbound HTTP(S) sent to a recorder; stops it after."""
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    proxy = ProxyRecorder()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "PYTHONUNBUFFERED": "1"}
    env.update(
        {k: proxy.url for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")}
    )
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    cmd = [sys.executable, "-m", "edtalk.cli", "ui", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--out-dir", str(tmp_path / "out"), "--device", "cpu"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_for(url, proc, tmp_path / "server.log")
        yield url, proxy
    finally:
        proxy.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"edtalk ui exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"edtalk ui did not serve {url} within {timeout} s:\n{log.read_text()}")


def _save_artifact(src: Path) -> None:
    dest = os.environ.get("EDTALK_ARTIFACTS")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, Path(dest) / src.name)


def test_browser_generates_a_video(
    server: tuple[str, ProxyRecorder], tmp_path: Path, media: dict[str, Path]
) -> None:
    url, proxy = server
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (ui extra)")
    external: list[str] = []

    def only_local(route: object, request: object) -> None:
        url = request.url  # type: ignore[attr-defined]
        if url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
            route.continue_()  # type: ignore[attr-defined]
        else:
            external.append(url)
            route.abort()  # type: ignore[attr-defined]

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.route("**/*", only_local)
        page.goto(url)
        page.locator("#source input[type=file]").set_input_files(str(media["photo"]))
        page.locator("#preview img").wait_for(timeout=60_000)  # the auto-crop preview
        page.locator("#audio input[type=file]").set_input_files(str(media["audio"]))
        page.locator("#emotion input").click()
        page.get_by_role("option", name="happy", exact=True).click()
        page.locator("#generate").click()
        video = page.locator("#result-video video")
        video.wait_for(timeout=120_000)
        duration = page.wait_for_function(
            "el => el.readyState >= 1 && isFinite(el.duration) ? el.duration : false",
            arg=video.element_handle(),
            timeout=30_000,
        ).json_value()
        href = page.locator("#result-file a").first.get_attribute("href")
        status = page.locator("#status").inner_text()
        shot = tmp_path / "edtalk_ui.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    _save_artifact(shot)
    assert shot.stat().st_size > 10_000
    assert math.isclose(duration, AUDIO_SECONDS, abs_tol=0.1), duration
    assert "30 frames" in status
    assert href is not None
    downloaded = tmp_path / "download.mp4"
    with urllib.request.urlopen(href if href.startswith("http") else url.rstrip("/") + href) as resp:
        downloaded.write_bytes(resp.read())
    info = io.probe_video(downloaded)
    assert (info.num_frames, info.fps, info.has_audio) == (30, 25.0, True)
    assert not external, f"the page tried to reach the network: {external}"
    assert not proxy.requests, f"the server tried to reach the network: {proxy.requests}"


def test_browser_live_tab_shows_frames_as_they_come(
    server: tuple[str, ProxyRecorder], tmp_path: Path, media: dict[str, Path]
) -> None:
    url, proxy = server
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (ui extra)")
    short = tmp_path / "short.wav"
    io.write_wav(short, io.read_audio(media["audio"])[: 12 * 640])
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1200})
        page.goto(url)
        page.get_by_role("tab", name="Live").click()
        page.locator("#live-source input[type=file]").set_input_files(str(media["photo"]))
        page.locator("#live-audio input[type=file]").set_input_files(str(short))
        page.locator("#live-start").click()
        page.locator("#live-frame img").wait_for(timeout=60_000)  # a frame before the stream ends
        video = page.locator("#live-video video")
        video.wait_for(timeout=60_000)
        duration = page.wait_for_function(
            "el => el.readyState >= 1 && isFinite(el.duration) ? el.duration : false",
            arg=video.element_handle(),
            timeout=30_000,
        ).json_value()
        status = page.locator("#live-status").inner_text()
        shot = tmp_path / "edtalk_ui_live.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    _save_artifact(shot)
    assert math.isclose(duration, 12 / 25, abs_tol=0.1), duration
    assert "12 frames streamed" in status
    assert not proxy.requests, f"the server tried to reach the network: {proxy.requests}"
