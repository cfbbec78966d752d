"""ESPnet's ASR task with the project's trainer and one fine-tuning option.

* trainer: :mod:`espnet_ext.train.trainer` (ESPnet's, extended through hooks).
* ``--encoder_lr_scale S``: the encoder's parameters get ``S`` times the optimizer's
  learning rate (a second parameter group; schedulers scale both groups alike). A
  pre-trained encoder is usually fine-tuned more gently than the freshly initialized
  decoder and CTC head (e.g. wav2vec 2.0, Baevski et al. 2020, sec. 4.4 freezes it at
  first; BEST-RQ fine-tunes all with one schedule). 1.0 is ESPnet's behaviour.
* ``--iterator_type sharded``: speech and transcripts from stage 2's shards
  (:mod:`espnet_ext.shards.factory`; data entries as for ESPnet's iterator).
"""

import argparse
from typing import List

import torch
from espnet2.tasks.abs_task import optim_classes
from espnet2.tasks.asr import ASRTask as _StockASRTask

from espnet_ext.tasks.base import ProjectTask


class ASRTask(ProjectTask, _StockASRTask):
    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        super().add_task_arguments(parser)
        group = parser.add_argument_group("espnet_ext fine-tuning")
        group.add_argument(
            "--encoder_lr_scale",
            type=float,
            default=1.0,
            help="Learning-rate multiplier for the encoder's parameters (1.0: same as the rest)",
        )

    @classmethod
    def build_optimizers(
        cls, args: argparse.Namespace, model: torch.nn.Module
    ) -> List[torch.optim.Optimizer]:
        scale = getattr(args, "encoder_lr_scale", 1.0)
        if scale == 1.0:
            return super().build_optimizers(args, model)
        if not scale > 0:
            raise ValueError(f"--encoder_lr_scale must be > 0, got {scale}")
        if args.sharded_ddp or args.exclude_weight_decay:
            raise ValueError("--encoder_lr_scale is not supported with sharded_ddp or exclude_weight_decay")
        conf = dict(args.optim_conf)
        if "lr" not in conf:
            raise ValueError("--encoder_lr_scale needs optim_conf.lr")
        encoder = [p for n, p in model.named_parameters() if n.startswith("encoder.")]
        rest = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
        groups = [{"params": rest}, {"params": encoder, "lr": conf["lr"] * scale}]
        return [optim_classes[args.optim](groups, **conf)]
