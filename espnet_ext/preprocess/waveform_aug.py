"""``preprocessor: waveform_aug``: ESPnet's CommonPreprocessor with noise, reverberation and
the ``data_aug_effects`` (speed perturbation) together on mono speech.

In ESPnet 202611 ``CommonPreprocessor._speech_process`` returns mono speech as ``(T, 1)``
after adding noise or convolving a RIR, and ``DataAugmentation`` then asserts a 1-D
waveform, so a config with both ``noise_scp``/``rir_scp`` and ``data_aug_effects`` stops at
the first utterance that draws both. This subclass runs the parent's noise and RIR step, gives
mono speech back its ``(T,)`` shape, and then applies the effects. Everything else (training
only: ``train=False`` applies nothing; the tokenization of the text) is the parent's.
"""

from typing import Dict, Union

import numpy as np
from espnet2.train.preprocessor import CommonPreprocessor


class WaveformAugPreprocessor(CommonPreprocessor):
    """CommonPreprocessor whose effects also follow noise/RIR on mono speech (same arguments)."""

    def _speech_process(self, data: Dict[str, Union[str, np.ndarray]]) -> Dict[str, Union[str, np.ndarray]]:
        effects, self.data_aug = self.data_aug, None  # the parent's noise / RIR step only
        try:
            data = super()._speech_process(data)
        finally:
            self.data_aug = effects
        speech = data.get(self.speech_name)
        if isinstance(speech, np.ndarray) and speech.ndim == 2 and speech.shape[1] == 1:
            data[self.speech_name] = speech[:, 0]
        if (
            self.train
            and effects is not None
            and self.data_aug_prob > 0
            and self.data_aug_prob >= np.random.random()
        ):
            data[self.speech_name] = effects(data[self.speech_name], self.fs)
        return data
