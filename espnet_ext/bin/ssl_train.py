"""Self-supervised pre-training: ESPnet's SSL trainer with espnet_ext's plugins.

    python -m espnet_ext.bin.ssl_train --config conf/pretrain_*.yaml ...

Takes exactly the options of ``espnet2.bin.ssl_train`` (``--help``). The plugins are
registered by importing ``espnet_ext`` at the top of this module; DDP workers started with
``--multiprocessing_distributed true`` are ``spawn`` children that unpickle the task class
from ``espnet_ext.tasks.ssl``, which imports ``espnet_ext`` as well.
"""

import espnet_ext  # noqa: F401  (registers the plugins)
from espnet_ext.tasks.ssl import SSLTask
from espnet_ext.utils.cli import task_entry_points

get_parser, main = task_entry_points(SSLTask)

if __name__ == "__main__":
    main()
