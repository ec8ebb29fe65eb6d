"""Tests written to kill mutants that survived the rest of the suite (tools/mutate.py)."""
