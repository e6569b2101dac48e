"""Benchmarks: each compares volumetric with the peer or naive baseline in the same run."""
