"""An ESPnet LSTM LM scorer whose single steps run through ``torch.lstm_cell``.

ESPnet's ``SequentialRNNLM.batch_score`` runs ``nn.LSTM`` on one time step per decoding step;
on CPU that call costs ~8 ms whatever the batch (the embedded 512-unit LM), against ~1.3 ms
for the same equations by ``lstm_cell`` on the same weights. :class:`FastLSTMLMScorer` is the
LM with that one method replaced (same scores to float rounding, same state layout per
hypothesis as a tensor), for ESPnet's beam searches and for
:mod:`espnet_ext.decoding.ctc_search`.
"""

from typing import Any, List, Tuple

import torch
from espnet2.legacy.nets.scorer_interface import BatchScorerInterface

from espnet_ext.decoding.ctc_search import _LSTMLMAdapter


class FastLSTMLMScorer(torch.nn.Module, BatchScorerInterface):
    """Wraps an ESPnet ``SequentialRNNLM`` (LSTM); ``batch_score``/``score`` as ESPnet's."""

    def __init__(self, lm: torch.nn.Module, sos: int):
        super().__init__()
        if not _LSTMLMAdapter.supports(lm):
            raise TypeError(f"{type(lm).__name__} is not a unidirectional LSTM SequentialRNNLM")
        self.lm = lm
        self.adapter = _LSTMLMAdapter(lm, sos)

    def init_state(self, x):
        return None

    def batch_score(
        self, ys: torch.Tensor, states: List[Any], xs: torch.Tensor
    ) -> Tuple[torch.Tensor, List[Any]]:
        return self.adapter.step_last(ys[:, -1], list(states))  # ys[:, 0] is <sos>

    def score(self, y: torch.Tensor, state: Any, x: torch.Tensor):
        logp, states = self.batch_score(y.unsqueeze(0), [state], None)
        return logp[0], states[0]
