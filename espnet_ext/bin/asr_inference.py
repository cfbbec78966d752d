"""Decoding: ESPnet's ``espnet2.bin.asr_inference`` with espnet_ext's plugins registered.

    python -m espnet_ext.bin.asr_inference --asr_train_config ... --asr_model_file ... \
        --data_path_and_name_and_type dump/test_clean/feats.scp,speech,kaldi_ark ...

A model that uses an ``ssl_conformer`` encoder or the ``logmel`` frontend can only be built
after the plugins are registered; everything else is ESPnet's inference.
"""

import espnet_ext  # noqa: F401  (registers the plugins)
from espnet2.bin.asr_inference import get_parser, main  # noqa: F401

if __name__ == "__main__":
    main()
