"""Experiments: the creator-marketplace simulator, its scenarios and policies, and the `ecorank` CLI."""
