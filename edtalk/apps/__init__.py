"""Applications built on the library: the main job (quickstart), sweeps, the web UI, parity checks,
face super-resolution and sample logging. Commands in `edtalk.commands` stay thin and call these."""
