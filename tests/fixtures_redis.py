"""Redis fixture (filled in with the serving work)."""
