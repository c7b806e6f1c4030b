"""Sympy helpers for the derivation chapters (filled in by Part I)."""
