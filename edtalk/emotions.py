"""The eight predefined expression weight vectors of the original release, and mixes of them.

`emotion_weights("happy")` is the released `happy.npy` (1 x 10 ELN coefficients fed to every frame);
`emotion_weights("happy:0.7,sad:0.3")` is 0.7 * happy + 0.3 * sad, and `"angry:1.5"` scales one vector.
The values ship as `edtalk/assets/predefined_exp_weights.json` (full float32 values of the upstream npy files).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import torch

# MEAD label order (the data contract's emotion ids).
EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")


@cache
def _table() -> dict[str, tuple[float, ...]]:
    text = resources.files("edtalk").joinpath("assets/predefined_exp_weights.json").read_text()
    weights = json.loads(text)["weights"]
    return {name: tuple(float(v) for v in weights[name]["values"][0]) for name in EMOTIONS}


def predefined(name: str) -> torch.Tensor:
    """The released weight vector of one emotion: 1 x 10 float32."""
    key = name.strip().lower()
    if key not in _table():
        raise ValueError(
            f"unknown emotion {name!r}; choose one of {', '.join(EMOTIONS)} (or mix: 'happy:0.7,sad:0.3')"
        )
    return torch.tensor([_table()[key]], dtype=torch.float32)


def _parse_term(term: str, spec: str) -> tuple[str, float]:
    name, _, weight = term.partition(":")
    if not weight:
        return name, 1.0
    try:
        return name, float(weight)
    except ValueError:
        raise ValueError(
            f"bad weight {weight!r} in emotion {spec!r}; write NAME:NUMBER terms, e.g. 'happy:0.7,sad:0.3'"
        ) from None


def emotion_weights(spec: str) -> torch.Tensor:
    """Parse an emotion name or mix into expression weights.

    Args:
        spec: "happy", "happy:0.7,sad:0.3" (weighted sum) or "angry:1.5" (scaled); names are the 8
            MEAD emotions, case-insensitive.

    Returns:
        1 x 10 float32 ELN coefficients.

    Raises:
        ValueError: empty spec, unknown name (the message lists the 8 names) or a bad weight.
    """
    terms = [t.strip() for t in spec.split(",") if t.strip()]
    if not terms:
        raise ValueError(f"empty emotion {spec!r}; choose one of {', '.join(EMOTIONS)}")
    total = torch.zeros(1, 10)
    for term in terms:
        name, weight = _parse_term(term, spec)
        total = total + weight * predefined(name)
    return total
