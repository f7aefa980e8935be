"""Estimator plugins: one file per estimator family; each registers itself on import."""
