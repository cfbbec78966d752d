"""Supervised fine-tuning: ESPnet's ASR trainer with espnet_ext's plugins.

    python -m espnet_ext.bin.asr_train --config conf/finetune_*.yaml ...

Takes exactly the options of ``espnet2.bin.asr_train`` (``--help``).
"""

import espnet_ext  # noqa: F401  (registers the plugins)
from espnet_ext.tasks.asr import ASRTask


def get_parser():
    return ASRTask.get_parser()


def main(cmd=None):
    ASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
