"""Bounds shared by recipes, the CLI and the API (kept import-light for the CLI)."""

MAX_VARIANTS = 100_000
MAX_SEED = 2**63 - 1
