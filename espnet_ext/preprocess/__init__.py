"""Preprocessors registered into ESPnet's ASR task (``preprocessor: waveform_aug``)."""

from espnet_ext.preprocess.waveform_aug import WaveformAugPreprocessor

__all__ = ["WaveformAugPreprocessor"]
