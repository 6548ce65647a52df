"""Applications built on the library: plans (the stage graph to run; the main job is the demo plan), the report,
sweeps, the web UI, parity checks, face super-resolution and sample logging. Commands in `edtalk.commands`
stay thin and call these."""
