"""Parity tests: the local cloud refuses what AWS refuses, the same way."""
