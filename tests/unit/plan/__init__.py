"""Tests of the logical plan: the aggregate registry and the validation pass."""
