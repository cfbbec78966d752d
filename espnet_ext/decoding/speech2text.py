"""ESPnet's ``Speech2Text`` with the CTC-only configurations decoded by
:mod:`espnet_ext.decoding.ctc_search`.

With ``ctc_weight: 1.0`` ESPnet drops the attention decoder from the search (its weight is
0) and runs its label-synchronous beam search on CTC prefix scores (+ the LM); here the same
configuration is decoded instead by

- ``beam_size: 1`` and no LM (or ``lm_weight: 0``): CTC greedy (best path), batched;
- otherwise: the time-synchronous CTC prefix beam search with the LM as a scorer;
- with ``decoder_rescore_weight`` λ > 0, that search's final beam is rescored by the attention
  decoder (one teacher-forced pass over all the beam's hypotheses at once, as WeNet's
  "attention rescoring", Yao et al. 2021, sec. 2.3): ``(1 - λ) ctc + λ att + lm_weight lm +
  penalty len``. The decoder then costs one batched forward per utterance instead of one per
  label and beam entry in the joint search.

Every other configuration (``ctc_weight < 1``: the joint CTC/attention search) is ESPnet's
search, with one change unless ``fast_lm=False``: an LSTM LM is scored through
:class:`espnet_ext.decoding.lm.FastLSTMLMScorer` (``lstm_cell`` steps, the same scores). The encoder, the tokenizer and the output format are ESPnet's in every case.
"""

from typing import List

import torch
from espnet2.bin.asr_inference import Speech2Text
from espnet2.legacy.nets.beam_search import Hypothesis
from espnet2.torch_utils.device_funcs import to_device

from espnet_ext.decoding.ctc_search import CTCPrefixBeamSearch, _LSTMLMAdapter, ctc_greedy
from espnet_ext.decoding.lm import FastLSTMLMScorer


class FastSpeech2Text(Speech2Text):
    """``Speech2Text`` (same keyword arguments) whose ``ctc_weight: 1.0`` path is CTC-only decoding."""

    def __init__(self, fast_lm: bool = True, decoder_rescore_weight: float = 0.0, **kwargs):
        if not 0.0 <= decoder_rescore_weight <= 1.0:
            raise ValueError(f"decoder_rescore_weight must be in [0, 1], got {decoder_rescore_weight}")
        # ESPnet builds its search either way (cheap); the LM it loads is reused below.
        super().__init__(**kwargs)
        self.rescore_weight = decoder_rescore_weight
        if fast_lm and self.beam_search is not None:
            self._use_fast_lm()
        ctc_weight = kwargs.get("ctc_weight", 0.5)
        self.ctc_mode = None
        if ctc_weight != 1.0 or self.beam_search is None:
            return
        model = self.asr_model
        beam = kwargs.get("beam_size", 20)
        lm_weight = kwargs.get("lm_weight", 1.0)
        lm = self.beam_search.full_scorers.get("lm")
        if isinstance(lm, FastLSTMLMScorer):
            lm = lm.lm
        if lm is None or lm_weight == 0:
            lm = None
        if beam == 1 and lm is None:
            self.ctc_mode = "greedy"
        else:
            self.ctc_mode = "prefix"
            self.ctc_search = CTCPrefixBeamSearch(
                beam_size=beam,
                blank=model.blank_id,
                eos=model.eos,
                sos=model.sos,
                lm=lm,
                lm_weight=lm_weight,
                penalty=kwargs.get("penalty", 0.0),
            )

    def _use_fast_lm(self) -> None:
        """ESPnet's search scores the LSTM LM through :class:`FastLSTMLMScorer` (same scores)."""
        bs = self.beam_search
        lm = bs.full_scorers.get("lm")
        if lm is None or not _LSTMLMAdapter.supports(lm):
            return
        fast = FastLSTMLMScorer(lm, self.asr_model.sos)
        bs.full_scorers["lm"] = bs.scorers["lm"] = fast
        if "lm" in bs.nn_dict:
            bs.nn_dict["lm"] = fast

    # ---- the CTC-only path ----
    def _hyp(self, labels: List[int], score: float, scores: dict) -> Hypothesis:
        m = self.asr_model
        yseq = torch.tensor([m.sos, *labels, m.eos], dtype=torch.long)
        return Hypothesis(yseq=yseq, score=score, scores=scores)

    def _ctc_decode(self, enc: torch.Tensor, enc_lens: torch.Tensor):
        logp = self.asr_model.ctc.log_softmax(enc).float().cpu()  # (B, T, V)
        m = self.asr_model
        if self.ctc_mode == "greedy":
            seqs = ctc_greedy(logp, enc_lens.cpu(), blank=m.blank_id, drop=(m.sos, m.eos))
            return [self._hyps_to_results([self._hyp(s, 0.0, {})]) for s in seqs]
        out = []
        for b in range(logp.size(0)):
            if self.rescore_weight > 0:
                hyps = self.ctc_search(logp[b, : int(enc_lens[b])], nbest=self.ctc_search.beam_size)
                hyps = self._rescore(enc[b, : int(enc_lens[b])], hyps)[: self.nbest]
            else:
                hyps = self.ctc_search(logp[b, : int(enc_lens[b])], nbest=self.nbest)
            out.append(
                self._hyps_to_results(
                    [
                        self._hyp(h["labels"], h["score"], {k: h[k] for k in ("ctc", "lm", "att") if k in h})
                        for h in hyps
                    ]
                )
            )
        return out

    def _rescore(self, enc: torch.Tensor, hyps: List[dict]) -> List[dict]:
        """The beam ``hyps`` (CTC search results) rescored with the attention decoder, best first.

        ``enc``: (T, D) encoder output of the utterance. One decoder forward over all
        hypotheses: input ``<sos> y``, target ``y <eos>``; ``att`` is the sum of the target's
        log-probabilities."""
        m, lam = self.asr_model, self.rescore_weight
        ys = [h["labels"] for h in hyps]
        n, longest = len(ys), max(len(y) for y in ys) + 1
        ys_in = torch.full((n, longest), m.eos, dtype=torch.long)
        ys_out = torch.full((n, longest), -1, dtype=torch.long)
        for i, y in enumerate(ys):
            ys_in[i, : len(y) + 1] = torch.tensor([m.sos, *y])
            ys_out[i, : len(y) + 1] = torch.tensor([*y, m.eos])
        in_lens = torch.tensor([len(y) + 1 for y in ys])
        memory = enc.unsqueeze(0).expand(n, -1, -1)
        mem_lens = torch.full((n,), enc.size(0), dtype=torch.long)
        logits, _ = m.decoder(memory, mem_lens, ys_in.to(enc.device), in_lens.to(enc.device))
        logp = logits.float().log_softmax(-1).cpu()
        valid = ys_out >= 0
        att = (logp.gather(-1, ys_out.clamp(min=0).unsqueeze(-1)).squeeze(-1) * valid).sum(-1)
        search = self.ctc_search
        out = []
        for h, a in zip(hyps, att.tolist()):
            score = (
                (1 - lam) * h["ctc"]
                + lam * a
                + search.lm_weight * h["lm"]
                + search.penalty * len(h["labels"])
            )
            out.append(dict(h, score=score, att=a))
        return sorted(out, key=lambda h: -h["score"])

    def _encode(self, speech: torch.Tensor, lengths: torch.Tensor):
        batch = to_device(
            {"speech": speech.to(getattr(torch, self.dtype)), "speech_lengths": lengths}, device=self.device
        )
        enc, enc_lens = self.asr_model.encode(**batch)
        if isinstance(enc, tuple):
            enc = enc[0]
        return enc, enc_lens

    @torch.no_grad()
    def __call__(self, speech, *args, **kwargs):
        if self.ctc_mode is None or isinstance(speech, (list, tuple)):
            return super().__call__(speech, *args, **kwargs)
        speech = torch.as_tensor(speech).unsqueeze(0)
        lengths = torch.tensor([speech.size(1)], dtype=torch.long)
        enc, enc_lens = self._encode(speech, lengths)
        return self._ctc_decode(enc, enc_lens)[0]

    def _can_batch_decode(self) -> bool:
        return self.ctc_mode is not None or super()._can_batch_decode()

    def _batch_decode_padded(self, speech: torch.Tensor, speech_lengths: torch.Tensor):
        if self.ctc_mode is None:
            return super()._batch_decode_padded(speech, speech_lengths)
        lengths, order = torch.sort(speech_lengths, descending=True)
        enc, enc_lens = self._encode(speech.index_select(0, order), lengths)
        results = self._ctc_decode(enc, enc_lens)
        unsorted = [None] * len(results)
        for pos, orig in enumerate(order.tolist()):
            unsorted[orig] = results[pos]
        return unsorted
