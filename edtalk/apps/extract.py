"""A plan's `extract` step: coefficient sidecars of a trained generator over the plan's shards.

The shards are linked into the step's folder (`edtalk.runs.extracted_data`) and `edtalk.coefficients`
writes `<shard>.tar.coeffs.npz` beside each link (what `edtalk extract-coefficients` writes), so the
audio stages that read the step train on that folder and a shared dataset stays as it is. A stamp
names the generator file and the shards: a rerun with the same ones keeps (or completes) the sidecars,
other ones redo the folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edtalk import runs


def extract_step(
    run_dir: Path, generator: Path, shards: Path, device: str = "cpu", batch_size: int = 64
) -> Path:
    """Sidecars of `generator` (a checkpoint) for every train/test shard of `shards`; returns the folder.

    Raises:
        ValueError: `shards` is no local shard directory (sidecars are files beside the shards).
    """
    import torch

    from edtalk.coefficients import extract_coefficients, link_shards
    from edtalk.weights import load_generator

    if not shards.is_dir():
        raise ValueError(
            f"extract: the plan's shards {shards} are no local directory (sidecars are written beside shards)"
        )
    data, stamp = runs.extracted_data(run_dir), runs.extract_stamp(run_dir)
    st = generator.stat()
    source = {
        "generator": str(generator.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "shards": str(shards.resolve()),
    }
    same = stamp.is_file() and json.loads(stamp.read_text()) == source
    if not same:
        shutil.rmtree(data, ignore_errors=True)
    link_shards(shards, data)
    stamp.write_text(json.dumps(source, indent=1))  # before extracting: an interrupted step resumes
    gen = load_generator(generator).to(torch.device(device))
    extract_coefficients(gen, data, batch_size=batch_size, overwrite=not same)
    return data
