"""ESPnet's language-model task with the project's trainer.

Everything is ESPnet's ``LMTask`` (``--lm seq_rnn|transformer``, token-level, the same
sentencepiece units as the ASR model, so ``asr_inference --lm_train_config/--lm_file`` and
``espnet2.bin.pack asr --lm_*`` take the result as is). Training goes through
:mod:`espnet_ext.train.trainer`, so the LM stage gets the same step checkpoints, resume,
accumulation and CPU bf16 behaviour as pre-training and fine-tuning.
``--iterator_type sharded`` reads the text-only shards stage 3 writes next to the LM text
(:mod:`espnet_ext.shards.factory`).
"""

from espnet2.tasks.lm import LMTask as _StockLMTask

from espnet_ext.tasks.base import ProjectTask


class LMTask(ProjectTask, _StockLMTask):
    pass
