"""``carbonscaling paper`` and ``carbonscaling sweep`` (commands registered here)."""
