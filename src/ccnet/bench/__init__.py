"""Benchmarks behind ``ccnet bench``: the criss-cross op against the published algorithms, RCCA
against non-local blocks, and whole-model speed. Reported, never asserted: see docs/guide/benchmarks.md."""
