"""Random numbers per rank.

ESPnet's epoch loop calls ``set_all_random_seed(seed + epoch)`` on every rank, so all
ranks draw the same random numbers: the same BEST-RQ span masks, SpecAugment, noise and
dropout on all 128 GPUs (each on different utterances, but with the same pattern).

The trainer reseeds at the start of each ``train_one_epoch``, right after ESPnet's own
seeding and before the epoch's iterator is started:

* rank 0 (and a single process) keeps ESPnet's ``seed + epoch``: single-process runs
  draw exactly what they drew before;
* rank r > 0 seeds with :func:`rank_seed` ``(seed, epoch, r)``, a 32-bit number from
  ``numpy.random.SeedSequence((seed, epoch, r))``: independent of the other ranks' and
  of the other epochs' streams, and a pure function of (seed, epoch, rank), so a rerun
  draws the same.

What stays the same on every rank: the model's initial parameters (built before
training from ``--seed``, and broadcast by DDP anyway), the BEST-RQ quantizer (drawn from
its own ``torch.Generator`` seeded by the loss's ``seed``, never from the global RNG),
and the data order (ESPnet's and the sharded iterator's batch order come from their own
``(seed, epoch)`` generators). DataLoader workers take their base seed from the global
torch RNG when the epoch's iterator starts, so their random transforms differ per rank
too. A resumed epoch restores each rank's saved RNG states after this reseeding
(:meth:`espnet_ext.train.resume.RunContext.begin_epoch`), so it continues each rank's
own stream.
"""

import numpy as np
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of ``rank`` for ``epoch`` (ESPnet's ``seed + epoch`` for rank 0)."""
    if rank == 0:
        return seed + epoch
    return int(np.random.SeedSequence((int(seed) % 2**32, int(epoch), int(rank))).generate_state(1)[0])


def reseed_for_rank(seed: int, epoch: int, rank: int) -> int:
    """Reseed Python's, numpy's and torch's global RNGs for this rank and epoch."""
    value = rank_seed(seed, epoch, rank)
    set_all_random_seed(value)
    return value
