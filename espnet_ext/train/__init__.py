"""Trainer extensions (subclasses of ESPnet's Trainer) used by the recipe's tasks.

:mod:`~espnet_ext.train.trainer` holds the ``Trainer`` itself; it composes
:mod:`~espnet_ext.train.options` (options and their validation),
:mod:`~espnet_ext.train.hooks` (iteration hooks, no-sync accumulation, mid-epoch seeking,
CPU bf16), :mod:`~espnet_ext.train.resume` (resume and step checkpointing),
:mod:`~espnet_ext.train.checkpoint` (checkpoint files) and
:mod:`~espnet_ext.train.watchdog` (the progress watchdog).
"""
