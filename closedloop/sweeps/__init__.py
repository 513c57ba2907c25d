"""Sweeps: grid expansion, execution on processes or Dask, per-run measures, summary."""
