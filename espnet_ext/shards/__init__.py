"""The sharded data path (``--iterator_type sharded``), in one package.

- ``format``: the on-disk shards stage 2 writes (manifest ``shards.tsv``, per-shard
  index, transcripts), their reader and ``verify`` (entry point
  ``python -m espnet_ext.bin.shards``).
- ``plan``: the epoch plan (which rank and loader worker reads what; length bucketing;
  ``BatchRule``); numpy only.
- ``iterator``: ``ShardedIterFactory``, the ESPnet iterator factory over the plan.
- ``factory``: the task side: ``add_sharded_arguments`` and
  ``build_sharded_iter_factory``, and ``ShardedTaskMixin`` used by the SSL, ASR and LM
  tasks.

``format`` and ``plan`` import numpy and kaldiio only (stage 2 must not import espnet2);
``iterator`` and ``factory`` import torch and espnet2.
"""
