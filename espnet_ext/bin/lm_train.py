"""Language-model training (stage 3 with --use_lm true): ESPnet's LM task with espnet_ext's trainer.

    python -m espnet_ext.bin.lm_train --config conf/train_lm_*.yaml ...

Takes exactly the options of ``espnet2.bin.lm_train`` (``--help``).
"""

import espnet_ext  # noqa: F401  (registers the plugins)
from espnet_ext.tasks.lm import LMTask
from espnet_ext.utils.cli import task_entry_points

get_parser, main = task_entry_points(LMTask)

if __name__ == "__main__":
    main()
