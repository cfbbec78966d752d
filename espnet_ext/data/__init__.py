"""Stage 1 data preparation: Kaldi-style data dirs from LibriSpeech, Libri-Light,
Common Voice or existing dirs, with documented bad-input rules and a validator.

- ``prepare``: runs the stage (entry point ``python -m espnet_ext.bin.prepare_data``).
- ``plan``: resolves the sets before any work.
- ``rules``: the bad-input rules (``RULES``) and transcript normalization.
- ``audio``: audio checks (soundfile) over a process pool.
- ``kaldi_dir``: the data dir content model and its atomic writing.
- ``validate``: the validator (entry point ``python -m espnet_ext.bin.validate_data``).
- ``combine``: reads validated dirs back and combines them.
- ``librispeech``, ``librilight``, ``commonvoice``, ``existing``: readers.
- ``pipeline``: applies the rules to what a reader found.
"""
