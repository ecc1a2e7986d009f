"""``carbonscaling validate`` (command registered here)."""
