"""The closed loop: logs -> models -> plan -> evaluation -> report."""
