"""What every project task adds to its ESPnet task: the project trainer, the sharded
iterator (:class:`~espnet_ext.shards.factory.ShardedTaskMixin`) and the launcher-only
config keys (:func:`~espnet_ext.tasks.launcher.add_launcher_arguments`).

    class ASRTask(ProjectTask, espnet2.tasks.asr.ASRTask): ...
"""

import argparse

from espnet_ext.shards.factory import ShardedTaskMixin
from espnet_ext.tasks.launcher import add_launcher_arguments
from espnet_ext.train.trainer import Trainer


class ProjectTask(ShardedTaskMixin):
    """A mixin placed before the stock ESPnet task class."""

    trainer = Trainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        super().add_task_arguments(parser)
        add_launcher_arguments(parser)
