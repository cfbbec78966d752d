"""Small shared helpers, each the one implementation of its job.

- ``atomic``: write a file so readers never see it half written.
- ``kaldi_table``: read and format ``<key> <value>`` tables (Kaldi data and dump files).
- ``stamps``: ``.done`` markers holding a fingerprint, so a finished stage re-runs as a no-op.
- ``cli``: what every ``python -m espnet_ext.bin.*`` entry point shares.

None of these modules imports espnet2 at import time (stage 2 must not).
"""
