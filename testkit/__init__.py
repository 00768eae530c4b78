"""Helpers shared by tests, bench, soak and loadtest: a real stack, a fake Triton, tiny checkpoints, load, reliability checks (/proc lives in cli.procfs)."""
