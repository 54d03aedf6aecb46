"""The creator-marketplace simulator: state, the round story, metrics and the experiment runner."""
