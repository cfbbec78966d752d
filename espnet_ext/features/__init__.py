"""The one definition of the recipe's input features: normalized 80-dim log-Mel.

Every consumer of acoustic features goes through this module:

* stage 2 (``espnet_ext.bin.extract_feats``) writes ``feats.scp`` with
  :func:`compute_features` on each utterance;
* the ``logmel`` frontend (:class:`espnet_ext.frontend.LogMelFrontend`) that
  pre-training, fine-tuning and decoding models carry calls
  :func:`compute_features_batch` on raw waveforms (``Speech2Text`` on a wav, a
  packed model) and passes through input that is already features.

So pre-training, fine-tuning and decoding see the same numbers by construction.

Decision: per-utterance normalization happens here and only here.  Features
are log-Mel AND per-utterance mean/variance normalized: each of the 80
channels has its mean over the utterance's valid frames subtracted and is
divided by its standard deviation over those frames (population std, floored
at ``std_floor``).  The model configs therefore use ``normalize: null``.
Waveforms are float in [-1, 1] (soundfile's float reading, as ESPnet's sound
reader and :func:`read_audio` give them): the normalization removes a gain
only where the Mel power stays above the 1e-10 log floor, so int16-scaled
input gives different values in quiet frames.

Definition (before normalization)
---------------------------------
Conformer input: 80-channel filterbanks from a 25 ms window with a 10 ms
stride (Gulati et al., 2020, "Conformer", sec. 3.1); BEST-RQ needs the
quantizer input normalized (Chiu et al., 2022, "BEST-RQ", sec. 3).

At 16 kHz: centered framing (the signal is reflect-padded by ``n_fft // 2``
samples on both sides), a periodic Hann window of 400 samples zero-padded to
``n_fft = 512`` (the window centered in the FFT frame), power spectrum,
Slaney-style Mel filterbank (librosa's ``htk=False`` scale and ``norm="slaney"``
area normalization, 0 Hz .. fs/2), ``log(max(mel_power, 1e-10))``.

This is numerically ESPnet's ``DefaultFrontend(fs=16000, n_fft=512,
win_length=400, hop_length=160, n_mels=80)`` (``Stft`` -> power ->
``LogMel``) up to float32 rounding: the tests compare against it on real
speech.  It is computed differently for speed, all in float32: 512-sample
frames are strided views of the padded signal, multiplied by the
zero-padded window into one contiguous copy, ``rfft``-ed, squared
(real^2 + imag^2, no complex-tensor library), and projected to Mel with a
precomputed filterbank, as four small matmuls over the bands of FFT bins
where each quarter of the filters is non-zero (the rest are exact zeros).

Number of frames for N samples: ``1 + N // hop_length`` (``1 + N // 160``).

It is NOT torchaudio's ``compliance.kaldi.fbank`` (Kaldi's ``compute-fbank-feats``):
that uses the HTK Mel scale without area normalization, a 20 Hz low edge, a
povey window, pre-emphasis 0.97, DC removal, and non-centered frames
(``snip_edges``: ``1 + (N - 400) // 160`` frames).  The two feature sets are
different and not interchangeable; only the frame rate and width agree.

Padding invariance: :func:`compute_features_batch` computes each utterance on
its own samples (a reflection of ITS OWN ends, statistics over ITS OWN frames)
in one batched pass (no per-utterance loop: on the training device the
micro-batch is a few kernels), so each row equals the single-utterance result
that stage 2 writes up to float32 summation order (within 1e-5); frames beyond
an utterance's length are zero.  (ESPnet's ``DefaultFrontend`` reflect-pads the padded batch,
so its last frames depend on what else is in the batch.)

Utterances shorter than one window (``win_length`` samples) are rejected by
stage 2; the compute functions still accept any length >= 1 (repeated
reflection, as ``numpy.pad(mode="reflect")``).
"""

from espnet_ext.features import logmel
from espnet_ext.features.audio import AudioError, read_audio
from espnet_ext.features.logmel import (  # noqa: F401 (re-exported: __all__)
    DEFAULT_OPTIONS,
    SAMPLE_RATE,
    LogMelOptions,
    analysis_tensors,
    compute_features,
    compute_features_batch,
    num_frames,
    slaney_mel_filterbank,
    utterance_mvn,
)

__all__ = ["AudioError", "read_audio", *logmel.__all__]
