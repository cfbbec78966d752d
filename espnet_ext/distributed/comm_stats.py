"""Count the collectives of a DDP training loop: gradient all-reduces and the rest.

DDP reduces gradients in buckets from C++, so wrapping ``torch.distributed.all_reduce``
does not see them; a DDP communication hook does (it replaces the all-reduce of each bucket,
here with the default one after counting). ESPnet's trainer also calls collectives from
Python on every micro-batch (the iterator stop flag, the loss statistics), counted by
temporarily wrapping ``torch.distributed.all_reduce`` / ``all_gather``.

    counter = CommCounter()
    counter.install(ddp_model)          # before the first backward
    with counter.count_collectives():
        ...training...
    counter.grad_calls, counter.grad_bytes, counter.other_calls, counter.other_bytes
"""

import contextlib
import functools
from typing import Iterator

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class CommCounter:
    """Counts calls and payload bytes (per rank, before the all-reduce algorithm's own
    traffic factor) of DDP's gradient buckets and of Python-level collectives."""

    def __init__(self) -> None:
        self.grad_calls = 0
        self.grad_bytes = 0
        self.other_calls = 0
        self.other_bytes = 0
        self._in_hook = False

    def _hook(self, state, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
        self.grad_calls += 1
        self.grad_bytes += _nbytes(bucket.buffer())
        self._in_hook = True  # the default hook calls dist.all_reduce: not an "other" call
        try:
            return allreduce_hook(state, bucket)  # DDP's default: divide by world, all-reduce
        finally:
            self._in_hook = False

    def install(self, ddp_model: torch.nn.parallel.DistributedDataParallel) -> None:
        ddp_model.register_comm_hook(None, self._hook)

    @contextlib.contextmanager
    def count_collectives(self) -> Iterator["CommCounter"]:
        saved = dist.all_reduce, dist.all_gather

        @functools.wraps(saved[0])
        def all_reduce(tensor, *args, **kwargs):
            if not self._in_hook:
                self.other_calls += 1
                self.other_bytes += _nbytes(tensor)
            return saved[0](tensor, *args, **kwargs)

        @functools.wraps(saved[1])
        def all_gather(tensor_list, tensor, *args, **kwargs):
            self.other_calls += 1
            self.other_bytes += _nbytes(tensor)
            return saved[1](tensor_list, tensor, *args, **kwargs)

        dist.all_reduce, dist.all_gather = all_reduce, all_gather
        try:
            yield self
        finally:
            dist.all_reduce, dist.all_gather = saved
