"""edtalk: EDTalk talking-head synthesis as a library: networks, weights, stages, inference, apps, CLI."""
