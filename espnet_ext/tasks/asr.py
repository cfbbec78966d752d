"""ESPnet's ASR task with the project's trainer (see espnet_ext.train.trainer)."""

from espnet2.tasks.asr import ASRTask as _StockASRTask

from espnet_ext.train.trainer import Trainer


class ASRTask(_StockASRTask):
    trainer = Trainer
