"""Hyperparameter sweeps of models and policies (Ray Tune, through `ray_adapter.py` only)."""
