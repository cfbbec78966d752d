"""Stage 1 data preparation: Kaldi-style data dirs from LibriSpeech, Libri-Light,
Common Voice or existing dirs, with documented bad-input rules and a validator.

- ``prepare``: the CLI/API (``python -m espnet_ext.data.prepare``).
- ``validate``: the validator CLI (``python -m espnet_ext.data.validate``).
- ``rules``: the bad-input rules (``RULES``) and transcript normalization.
- ``audio``: audio checks (soundfile) over a process pool.
- ``kaldi_dir``: read / write / validate / combine data dirs.
- ``librispeech``, ``librilight``, ``commonvoice``, ``existing``: readers.
- ``pipeline``: applies the rules to what a reader found.
"""
