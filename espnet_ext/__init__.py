"""ESPnet plugins for BEST-RQ self-supervised Conformer pre-training and fine-tuning.

``import espnet_ext`` registers every plugin into ESPnet's class choices (see
:mod:`espnet_ext.register`): the encoder ``ssl_conformer`` (ASR and SSL tasks), the SSL loss
``best_rq`` and its masking util ``block_mask``, the frontend ``logmel`` and the scheduler
``warmupcosinelr``.
"""

from espnet_ext.register import install as _install
from espnet_ext.register import register

__all__ = ["register"]
__version__ = "0.1.0"

_install()
