"""The original EDTalk train/test split (``assets/splits.json``) and clip routing.

``splits.json`` lists the clip ids of ``data_preprocess/lists/{train,test}.json`` upstream: MEAD
``<spk>#<emotion>#level_<k>#<nnn>`` (test speakers M003, M030, W009, W015) and HDTF ``<video>#<k>``
(77 test videos). Clips it does not list go to test when their speaker or video is a test one
(whole speakers / videos are held out), otherwise to train.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

MEAD_TEST_SPEAKERS = ("M003", "M030", "W009", "W015")


@dataclass(frozen=True)
class Splits:
    train: frozenset[str]
    test: frozenset[str]
    test_groups: frozenset[str]  # speakers / HDTF videos held out

    def route(self, clip_id: str, test_speakers: Iterable[str] = ()) -> str:
        """``train`` or ``test`` for a clip id; `test_speakers` holds extra speakers/videos out."""
        if clip_id in self.test:
            return "test"
        if clip_id in self.train:
            return "train"
        group = clip_id.split("#")[0]
        return "test" if group in self.test_groups or group in set(test_speakers) else "train"


@lru_cache(maxsize=1)
def load_splits() -> Splits:
    """The packaged upstream split."""
    data = json.loads(resources.files("datamodules").joinpath("assets/splits.json").read_text())
    test = frozenset(data["test"])
    groups = frozenset(c.split("#")[0] for c in test) | frozenset(MEAD_TEST_SPEAKERS)
    return Splits(frozenset(data["train"]), test, groups)
