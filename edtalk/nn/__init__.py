"""Plain nn.Modules, one file per paper component (no Lightning here)."""
