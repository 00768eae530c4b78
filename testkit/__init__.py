"""Helpers shared by tests, bench, soak and loadtest: a real stack, a fake Triton, tiny checkpoints,
load, reliability checks (the /proc helpers live in cli.procfs)."""
