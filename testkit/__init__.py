"""Helpers shared by tests, bench, soak and loadtest: a real stack, a fake Triton, load, /proc."""
