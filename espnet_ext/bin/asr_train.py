"""Supervised fine-tuning: ESPnet's ASR trainer with espnet_ext's plugins.

    python -m espnet_ext.bin.asr_train --config conf/finetune_*.yaml ...

Takes exactly the options of ``espnet2.bin.asr_train`` (``--help``).
"""

import espnet_ext  # noqa: F401  (registers the plugins)
from espnet_ext.tasks.asr import ASRTask
from espnet_ext.utils.cli import task_entry_points

get_parser, main = task_entry_points(ASRTask)

if __name__ == "__main__":
    main()
