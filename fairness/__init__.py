"""Fairness engine: exposure metrics (and, later, the blend, allocator and planner)."""
