"""Benchmarks against the field: classical codecs, BD-rate, RD plots."""
