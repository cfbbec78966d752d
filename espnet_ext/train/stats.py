"""Fewer collectives per micro-batch: the statistics reduced once per update (or log interval).

Per micro-batch on DDP, ESPnet's ``train_one_epoch`` all-reduces an iterator stop flag
(and reads it back on the host), all-gathers every statistic the model reports, one
collective each (``espnet2.torch_utils.recursive_op.recursive_sum``), and all-reduces the
batch weight. ``accum_grad`` changes none of that. Of these, the update needs only the
weight: ESPnet normalizes each micro-batch's loss by the weight summed over the ranks
(``loss * w_rank / W * world``), which differs from the local mean whenever ranks hold
different numbers of utterances.

With ``--stats_reduce update`` (default) or ``log_interval`` the trainer runs ESPnet's
loop with ``distributed=False`` (no stop flag, no statistics collectives, no ESPnet loss
weighting) and wraps the model in :class:`StatsTap`, which, per micro-batch:

* all-reduces the weight (one scalar) and returns ESPnet's normalized loss, computed as
  ESPnet does it (same operations, same order: the same update, bit for bit);
* keeps the local statistics, and at each reduce point (the last micro-batch of an
  update, or of a log interval, and the end of the epoch) reduces all kept ones in one
  all-reduce, returns the current micro-batch's global values to ESPnet to register, and
  overwrites the entries already registered for the earlier ones with their global values,
  computed as ESPnet computes them (``nanmean`` over ranks of ``stat * weight``, times
  the world size, over the global weight). The reporter then holds what the stock trainer
  would have registered; with ``update`` the log lines are those values too, with
  ``log_interval`` entries after the last reduce point are still local in a log line
  that falls between reduce points (never in the saved or epoch statistics: a step
  checkpoint and the end of the epoch reduce first).

The stop flag exists for iterators whose ranks can run out at different times. The
trainer checks once per epoch (one all-reduce) that every rank's epoch has the same
``len()`` -- true by construction for the sharded iterator and ESPnet's sequence
iterator -- and runs ESPnet's stock per-micro-batch path for an epoch where it does not.
"""

import logging
from typing import Any, Dict, List, Optional, Tuple

import torch

STATS_REDUCE = ("micro_batch", "update", "log_interval")


def equal_epoch_lengths(iterator, device: str) -> bool:
    """All ranks' epochs have the same known length (one all-reduce)."""
    try:
        n = len(iterator)
    except TypeError:
        n = -1
    t = torch.tensor([n, -n], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    hi, neg_lo = t.tolist()
    return n >= 0 and hi == -neg_lo


def _unpack(retval) -> Tuple[torch.Tensor, Dict[str, Any], torch.Tensor]:
    if isinstance(retval, dict):
        return retval["loss"], retval["stats"], retval["weight"]
    loss, stats, weight = retval
    return loss, stats, weight


def _repack(retval, loss, stats, weight):
    if isinstance(retval, dict):
        return dict(retval, loss=loss, stats=stats, weight=weight)
    return loss, stats, weight


class StatsTap(torch.nn.Module):
    """Wraps the (DDP) model for ESPnet's loop run with ``distributed=False``.

    Args:
        model: the model ESPnet's loop would have called.
        reporter: the epoch's ``SubReporter`` (entries are overwritten in place).
        world_size: DDP world size.
        reduce_every: micro-batches between reduce points (``accum_grad`` or the log interval).
        start: micro-batches of the epoch already done (resume).
        n_iters: micro-batches in the whole epoch (the last one is a reduce point).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        reporter,
        *,
        world_size: int,
        reduce_every: int,
        start: int = 0,
        n_iters: Optional[int] = None,
    ):
        super().__init__()
        self.module = model
        self._reporter = reporter
        self.world_size = world_size
        self.reduce_every = max(1, int(reduce_every))
        self.iiter = start
        self.n_iters = n_iters
        # (reporter index or None for the current micro-batch, keys, stat*weight, weight)
        self._kept: List[Tuple[Optional[int], List[str], torch.Tensor, torch.Tensor]] = []
        self.collectives = 0

    def forward(self, **batch):
        retval = self.module(**batch)
        self.iiter += 1
        loss, stats, weight = _unpack(retval)
        stats = {k: v for k, v in stats.items() if v is not None}
        total = weight.detach().sum()
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
        self.collectives += 1
        # ESPnet's normalization (espnet2/train/trainer.py, train_one_epoch), same ops:
        loss = (loss * weight.type(loss.dtype)).sum()
        loss /= total
        loss *= self.world_size
        keys = sorted(stats)
        w = weight.detach().to(torch.float64).reshape(-1)
        values = (
            torch.stack([(stats[k].detach().to(torch.float64).reshape(-1) * w).sum() for k in keys])
            if keys
            else w.new_zeros(0)
        )
        # ESPnet has registered this micro-batch's iteration time already: the entry index.
        self._kept.append((self._reporter.count - 1, keys, values, w.sum()))
        last = self.n_iters is not None and self.iiter >= self.n_iters
        if self.iiter % self.reduce_every == 0 or last:
            current = self._reduce()
            if current is not None:
                stats, total = current
        return _repack(retval, loss, stats, total)

    def flush(self) -> None:
        """Reduce the kept statistics (all already registered) and overwrite their entries."""
        if self._kept:
            self._reduce(current_registered=True)

    def _reduce(self, current_registered: bool = False):
        """One all-reduce of every kept entry; overwrites the registered ones; returns the
        current (last kept, not yet registered) entry's global stats and weight."""
        from espnet2.train.reporter import WeightedAverage

        kept, self._kept = self._kept, []
        parts = []
        for _, _, values, w in kept:
            finite = ~torch.isnan(values)
            parts += [
                w.reshape(1),
                torch.where(finite, values, torch.zeros_like(values)),
                finite.to(values.dtype),
            ]
        packed = torch.cat(parts)
        torch.distributed.all_reduce(packed, op=torch.distributed.ReduceOp.SUM)
        self.collectives += 1
        out = packed.tolist()
        result = None
        pos = 0
        for i, (index, keys, values, _) in enumerate(kept):
            k = len(keys)
            total_w = out[pos]
            sums, counts = out[pos + 1 : pos + 1 + k], out[pos + 1 + k : pos + 1 + 2 * k]
            pos += 1 + 2 * k
            stat = {
                key: (s / c * self.world_size / total_w) if c > 0 else float("nan")
                for key, s, c in zip(keys, sums, counts)
            }
            if i == len(kept) - 1 and not current_registered:
                device = values.device
                result = (
                    {key: torch.tensor(v, dtype=torch.float64, device=device) for key, v in stat.items()},
                    torch.tensor(total_w, dtype=torch.float64, device=device),
                )
                continue
            for key, v in stat.items():
                entries = self._reporter.stats.get(key)
                if entries is None or index >= len(entries):
                    logging.warning(
                        f"statistic {key!r} of micro-batch entry {index} not registered; kept local"
                    )
                    continue
                entries[index] = WeightedAverage(v, total_w)
        return result
