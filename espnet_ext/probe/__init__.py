"""Evaluating the pre-trained encoder beyond one fine-tune: the frozen-encoder CTC probe
(:mod:`espnet_ext.probe.probe`)."""

from espnet_ext.probe.probe import (  # noqa: F401
    ProbeBudget,
    encoder_layers,
    load_probe_batches,
    run_probe,
)
