"""Claim plugins: one file per source paper; each registers its theorems as executable checks."""
