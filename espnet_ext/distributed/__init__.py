"""Distributed training: launch geometry, batch arithmetic and gradient-traffic accounting.

* :mod:`espnet_ext.distributed.launch`: reads a training command's effective batch settings,
  checks them against the launch geometry, and builds the local / slurm / torchrun commands
  (CLI: ``python -m espnet_ext.bin.launch``).
* :mod:`espnet_ext.distributed.comm_stats`: counts DDP gradient all-reduces and other
  collectives (used by ``bench/ddp_accum.py`` and the tests).
"""
