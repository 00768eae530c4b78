"""Helpers shared by tests, bench, soak and loadtest: a real stack, a fake Triton, tiny checkpoints,
load, reliability checks, and what /proc says about processes and sockets (procfs)."""
