"""Scale-out on Ray; Ray is imported only in experiments/scale/* and experiments/tune/ray_adapter.py."""
