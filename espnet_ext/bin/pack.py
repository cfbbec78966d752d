"""Packing: ESPnet's ``espnet2.bin.pack`` (a zip the model zoo loader unpacks).

    python -m espnet_ext.bin.pack asr --asr_train_config ... --asr_model_file ... --outpath x.zip

The packed config names espnet_ext's plugins: whoever unpacks it needs ``pip install
espnet_ext`` and ``import espnet_ext`` before ``Speech2Text.from_pretrained``.
"""

import espnet_ext  # noqa: F401  (registers the plugins)
from espnet2.bin.pack import get_parser, main  # noqa: F401

if __name__ == "__main__":
    main()
