"""Two kinds of traffic on one deployment: interactive (a user waits: a search query) and bulk (indexing).

Two mechanisms, written into every build by `builder.repository` and used by the gateway (`gateway.jobs`):

- Triton priority levels. Every composing model's dynamic batcher has two levels; the ensemble hands a
  request's level to each of its steps (Triton 2.51 does: `tests/test_priorities.py` watches the steps'
  queues), so a queued interactive request is taken before every queued bulk one.
- A bulk lane. A step already executing a batch is not interrupted by the queue's order, and a bulk batch
  can run for seconds. So the steps whose time grows with the tokens (the tokenizer, an engine on the CPU)
  have a twin, `<model>_bulk`, which only bulk requests reach (through the `<ensemble>_bulk` ensembles) and
  which runs at a lower OS priority: an interactive request finds its own instances free, and when both
  lanes want the CPU the kernel gives it to the interactive one. The cheap steps (ids, postprocess) are
  shared and ordered by the priority levels. An engine on a GPU is shared too (a second copy would double
  its memory): there the priority levels order its queue.
"""

from __future__ import annotations

from enum import Enum


class Priority(Enum):
    """A request's level; the value is Triton's (1 is served first)."""

    INTERACTIVE = 1
    BULK = 2

    @property
    def label(self) -> str:
        return self.name.lower()


PRIORITY_NAMES = tuple(p.label for p in Priority)
# How much less CPU the bulk lane gets when both lanes want it: nice 10 against 0 is a weight of 110 against
# 1024 in the kernel's scheduler, so an interactive step keeps ~90 % of a core that a bulk step also wants.
BULK_NICE = 10
# A bulk ensemble takes (and its lane's steps batch) at most this many inputs per Triton request: one bulk
# engine execution is one sub-request of the gateway, so a bulk request that just missed a batch waits for one
# sub-request, not for every queued one (the fair tail of big requests).
BULK_MAX_BATCH = 32
# The bulk lane's engine on the CPU: one instance with every core's threads (a second copy of the model's memory,
# not two), and a bulk job keeps two sub-requests in flight: one executing there, the next tokenized and waiting.
BULK_ENGINE_INSTANCES = 1
BULK_IN_FLIGHT = 2
NICE_PARAMETER = "trident_nice"  # a step's config parameter: the OS nice value its stub runs at


def lower_os_priority(nice: int) -> None:
    """Every thread of this process (a Triton stub) at `nice`, and so every thread it starts later (a runtime's
    pool inherits its creator's value). Linux keeps a nice value per thread; raising it needs no privilege."""
    import os

    tasks = f"/proc/{os.getpid()}/task"
    for tid in (int(name) for name in os.listdir(tasks)) if os.path.isdir(tasks) else [0]:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
        except (ProcessLookupError, PermissionError):  # a thread that ended meanwhile
            continue
