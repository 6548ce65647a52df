"""Built-in sample inputs for `edtalk generate`, synthesised on demand (nothing is downloaded or shipped).

`write_samples(folder)` writes, from the built-in dataset's synthetic face (`skimage.data.astronaut()`)
and `espeak-ng` speech (a vowel-like signal without it):

| file        | what                                                   | use as                          |
|-------------|--------------------------------------------------------|---------------------------------|
| photo.png   | an un-cropped photo with one face                      | --source                        |
| speech.wav  | a spoken sentence, 16 kHz mono                         | --audio                         |
| talk.mp4    | a talking, head-moving, happy clip with its own sound  | --lip / --pose / --exp-driver / --source |
| angry.png   | one frame of an angry clip                             | --exp-driver                    |
"""

from __future__ import annotations

import shutil
from pathlib import Path

SAMPLE_FILES = ("photo.png", "speech.wav", "talk.mp4", "angry.png")


def write_samples(folder: str | Path) -> dict[str, Path]:
    """Write the sample inputs into `folder` (skipping files already there); returns name -> path."""
    from PIL import Image

    from datamodules.synthetic import SENTENCES, ClipSpec, base_face, make_raw_clip, speak
    from edtalk.io import read_video, write_wav

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / name for name in SAMPLE_FILES}
    if not paths["photo.png"].is_file():
        Image.fromarray(base_face("S01").image).save(paths["photo.png"])
    if not paths["speech.wav"].is_file():
        write_wav(paths["speech.wav"], speak(SENTENCES[1], "en+f2"))
    raw = folder / ".raw"
    if not paths["talk.mp4"].is_file():
        shutil.move(make_raw_clip(ClipSpec("S02", "happy", 1, seed=7), raw), paths["talk.mp4"])
    if not paths["angry.png"].is_file():
        clip = make_raw_clip(ClipSpec("S03", "angry", 1, seed=11), raw)
        Image.fromarray(read_video(clip, max_frames=1)[0]).save(paths["angry.png"])
    shutil.rmtree(raw, ignore_errors=True)
    return paths
