"""One intra-op thread for a block of work: float sums that do not depend on the caller's
thread count.

CPU kernels (matrix products, convolutions) split their reductions over torch's intra-op
threads, and a float sum's value depends on its order: the same seeded training run gives
weights that differ in the last bits on one and on two threads (about 1e-7 after one epoch of
a small CNN), and further training amplifies the difference. Work that must come out the same
on every machine, such as training a reference network that later scores others, runs inside
:func:`one_thread`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(1)``; the caller's count is restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
