"""Distributed training: launch geometry, batch arithmetic, launch plans and gradient-traffic
accounting. The launcher's CLI is ``python -m espnet_ext.bin.launch``; it goes through:

* :mod:`~espnet_ext.distributed.geometry`: backend, nodes and processes per node (values);
* :mod:`~espnet_ext.distributed.batch_settings`: a training command's effective batch settings
  (config, then command line) and the training set size;
* :mod:`~espnet_ext.distributed.batch`: the batch arithmetic on a geometry and the
  global-batch check (values);
* :mod:`~espnet_ext.distributed.plan` and :mod:`~espnet_ext.distributed.backends`
  (``local``, ``slurm``, ``torchrun``): the exact processes and files of a launch;
* :mod:`~espnet_ext.distributed.report`: all the launcher's text;
* :mod:`~espnet_ext.distributed.runner`: runs a plan, its output into the logs.

:mod:`~espnet_ext.distributed.comm_stats` counts DDP gradient all-reduces and other
collectives (used by ``bench/ddp_accum.py`` and the tests).
"""
