"""Count the collectives of a DDP training loop, by kind: gradient all-reduces and the rest.

DDP reduces gradients in buckets from C++, so wrapping ``torch.distributed.all_reduce``
does not see them; a DDP communication hook does (it replaces the all-reduce of each bucket,
here with the default one after counting). Everything else is counted by temporarily
wrapping the ``torch.distributed`` functions that Python code calls: ESPnet's trainer
(the iterator stop flag, the loss statistics), the project's trainer, and DDP itself
(``_broadcast_coalesced``: the buffers it broadcasts from rank 0 before each forward with
``broadcast_buffers=True``, ESPnet's setting). A collective called inside another counted
one (``all_gather_object`` uses ``all_gather``) counts once, as the outer kind.

    counter = CommCounter()
    counter.install(ddp_model)          # before the first backward
    with counter.count_collectives():
        ...training...
    counter.kinds                       # {"all_reduce": [calls, bytes], ...}
    counter.grad_calls, counter.grad_bytes, counter.other_calls, counter.other_bytes
"""

import contextlib
import functools
from typing import Any, Dict, Iterator, List

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

GRAD_KIND = "all_reduce (DDP gradient buckets)"
BUFFER_KIND = "broadcast (DDP buffers, _broadcast_coalesced)"

# torch.distributed functions counted, and which argument holds the payload.
_COUNTED = {
    "all_reduce": 0,
    "all_gather": 1,
    "all_gather_into_tensor": 1,
    "reduce_scatter_tensor": 1,
    "reduce_scatter": 0,
    "broadcast": 0,
    "reduce": 0,
    "gather": 0,
    "scatter": 0,
    "all_to_all": 1,
    "all_to_all_single": 1,
    "barrier": None,
    "all_gather_object": 1,
    "gather_object": 0,
    "broadcast_object_list": 0,
    "scatter_object_list": 1,
    "_broadcast_coalesced": 1,
}


def _nbytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(o) for o in obj)
    return 0  # Python objects: pickled size unknown here


class CommCounter:
    """Counts calls and payload bytes (per rank, before the algorithm's own traffic factor)
    of DDP's gradient buckets and of every Python-level collective, by kind."""

    def __init__(self) -> None:
        self.kinds: Dict[str, List[int]] = {}
        self._depth = 0

    def _add(self, kind: str, nbytes: int) -> None:
        entry = self.kinds.setdefault(kind, [0, 0])
        entry[0] += 1
        entry[1] += nbytes

    @property
    def grad_calls(self) -> int:
        return self.kinds.get(GRAD_KIND, [0, 0])[0]

    @property
    def grad_bytes(self) -> int:
        return self.kinds.get(GRAD_KIND, [0, 0])[1]

    @property
    def other_calls(self) -> int:
        return sum(c for k, (c, _) in self.kinds.items() if k != GRAD_KIND)

    @property
    def other_bytes(self) -> int:
        return sum(b for k, (_, b) in self.kinds.items() if k != GRAD_KIND)

    def _hook(self, state, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
        self._add(GRAD_KIND, _nbytes(bucket.buffer()))
        self._depth += 1  # the default hook calls dist.all_reduce: not another call
        try:
            return allreduce_hook(state, bucket)  # DDP's default: divide by world, all-reduce
        finally:
            self._depth -= 1

    def install(self, ddp_model: torch.nn.parallel.DistributedDataParallel) -> None:
        ddp_model.register_comm_hook(None, self._hook)

    def _wrap(self, name: str, fn, arg: Any):
        kind = BUFFER_KIND if name == "_broadcast_coalesced" else name

        @functools.wraps(fn)
        def counted(*args, **kwargs):
            if self._depth == 0:
                payload = args[arg] if arg is not None and len(args) > arg else None
                self._add(kind, _nbytes(payload))
            self._depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1

        return counted

    @contextlib.contextmanager
    def count_collectives(self) -> Iterator["CommCounter"]:
        saved = {name: getattr(dist, name) for name in _COUNTED if hasattr(dist, name)}
        for name, fn in saved.items():
            setattr(dist, name, self._wrap(name, fn, _COUNTED[name]))
        try:
            yield self
        finally:
            for name, fn in saved.items():
                setattr(dist, name, fn)
