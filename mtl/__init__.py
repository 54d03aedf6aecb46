"""Multi-task models (SharedBottom, MMoE, PLE) predicting GMV, prosperity, risk and complaint heads."""
