"""CTC-only decoding over the CTC posteriors: greedy, and a time-synchronous prefix beam search
with an ESPnet LM as a scorer, batched over the hypotheses.

Why not ESPnet's search with ``ctc_weight: 1.0``: ESPnet's beam search is label-synchronous.
Every output label it adds runs :class:`CTCPrefixScoreTH`'s forward recursion over the whole
utterance (a Python loop over the encoder frames, a few small tensor ops each, with
``ctc_window_margin`` only an approximate shortcut), so an utterance of T frames and L labels
costs about T x L small ops. The search here walks the frames once (T steps, each a handful of
``(hyps, vocab)`` tensor ops and one batched LM step for the prefixes that grew), which on
the embedded model is an order of magnitude less CPU time (bench/decoding.py).

Objective: the same as ESPnet's with ``ctc_weight: 1.0`` -- the CTC log-likelihood of the
label sequence (all its alignments), plus ``lm_weight`` times the LM log-probability of the
sequence and ``<eos>``, plus ``penalty`` per label. A finished hypothesis's ``scores["ctc"]`` is
exactly ``-ctc_loss`` of its labels: the final beam is rescored with the exact CTC forward
(tests/test_decoding.py). What differs is the pruning:
ESPnet keeps the best ``beam`` prefixes per label count, this search the best ``beam``
prefixes per frame (the standard CTC prefix beam search, e.g. Hannun et al. 2014), ranked by
CTC prefix probability up to that frame + LM + penalty. With an unlimited beam both find the
exact best sequence; with a finite beam they can differ.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch

NEG_INF = float("-inf")


def ctc_greedy(
    logp: torch.Tensor, lengths: Optional[torch.Tensor] = None, blank: int = 0, drop: Sequence[int] = ()
) -> List[List[int]]:
    """Best path: the argmax label of every frame, repeats merged, blanks (and ``drop``) removed.

    ``logp``: (B, T, V) or (T, V) CTC (log-)posteriors; ``lengths``: (B,) valid frames."""
    if logp.dim() == 2:
        logp = logp.unsqueeze(0)
    best = logp.argmax(-1)  # (B, T)
    if lengths is None:
        lengths = torch.full((best.size(0),), best.size(1), dtype=torch.long)
    out = []
    skip = set(drop) | {blank}
    for row, n in zip(best.tolist(), lengths.tolist()):
        seq, prev = [], None
        for k in row[:n]:
            if k != prev and k not in skip:
                seq.append(k)
            prev = k
        out.append(seq)
    return out


def exact_ctc_loglik(logp: torch.Tensor, seqs: List[Sequence[int]], blank: int = 0) -> torch.Tensor:
    """log P(seq | x) summed over all CTC alignments, per sequence (one batched forward)."""
    n, T = len(seqs), logp.size(0)
    ys = [list(q) for q in seqs]
    lens = torch.tensor([len(y) for y in ys], dtype=torch.long)
    flat = torch.tensor([i for y in ys for i in y], dtype=torch.long)
    loss = torch.nn.functional.ctc_loss(
        logp.unsqueeze(1).expand(T, n, logp.size(1)),
        flat,
        torch.full((n,), T, dtype=torch.long),
        lens,
        blank=blank,
        reduction="none",
        zero_infinity=False,
    )
    return -loss


class _LMAdapter:
    """Scores the next label of many prefixes at once through an ESPnet LM's ``batch_score``.

    ``batch_score(ys, states, xs)`` takes prefixes of one length. An RNN LM only reads the
    last label (its state holds the rest), so prefixes of any lengths go in one call; any
    other LM is called once per prefix length with the whole prefixes."""

    def __init__(self, lm: torch.nn.Module, sos: int):
        from espnet2.lm.seq_rnn_lm import SequentialRNNLM

        self.lm = lm
        self.sos = sos
        self.last_label_only = isinstance(lm, SequentialRNNLM)

    def init(self) -> Tuple[torch.Tensor, object]:
        logp, states = self.step([()], [None])
        return logp[0], states[0]

    def step(self, prefixes: List[Tuple[int, ...]], states: List[object]):
        """Next-label log-probabilities (N, V) and the new states, for prefixes whose LM
        state in ``states`` covers all but their last label (None: nothing read yet)."""
        if self.last_label_only:
            ys = torch.tensor([[p[-1] if p else self.sos] for p in prefixes], dtype=torch.long)
            return self.lm.batch_score(ys, states, None)
        by_len: Dict[int, List[int]] = {}
        for i, p in enumerate(prefixes):
            by_len.setdefault(len(p), []).append(i)
        logp = [None] * len(prefixes)
        new_states = [None] * len(prefixes)
        for idx in by_len.values():
            ys = torch.tensor([[self.sos, *prefixes[i]] for i in idx], dtype=torch.long)
            lp, st = self.lm.batch_score(ys, [states[i] for i in idx], None)
            for j, i in enumerate(idx):
                logp[i], new_states[i] = lp[j], st[j]
        return torch.stack(logp), new_states


class _LSTMLMAdapter(_LMAdapter):
    """The same scores for ESPnet's ``SequentialRNNLM`` with an LSTM, one step of each layer
    by ``torch.lstm_cell`` on the LM's own weights (the same equations as ``nn.LSTM``).

    ``nn.LSTM`` called for a single time step costs about 8 ms of CPU per call on the
    embedded LM (512 units) whatever the batch size, ``lstm_cell`` with the same weights about
    1.3 ms (bench/decoding.py's profile); a search makes one such call per frame. The states
    are kept per hypothesis as (layers, 2, units) tensors."""

    def __init__(self, lm: torch.nn.Module, sos: int):
        super().__init__(lm, sos)
        rnn = lm.rnn
        self.layers = [
            (
                getattr(rnn, f"weight_ih_l{k}"),
                getattr(rnn, f"weight_hh_l{k}"),
                getattr(rnn, f"bias_ih_l{k}", None),
                getattr(rnn, f"bias_hh_l{k}", None),
            )
            for k in range(rnn.num_layers)
        ]
        self.units = rnn.hidden_size

    @staticmethod
    def supports(lm: torch.nn.Module) -> bool:
        from espnet2.lm.seq_rnn_lm import SequentialRNNLM

        rnn = getattr(lm, "rnn", None)
        return (
            isinstance(lm, SequentialRNNLM)
            and isinstance(rnn, torch.nn.LSTM)
            and not rnn.bidirectional
            and getattr(rnn, "proj_size", 0) == 0
            and rnn.batch_first
        )

    def step(self, prefixes, states):
        ys = torch.tensor([p[-1] if p else self.sos for p in prefixes], dtype=torch.long)
        return self.step_last(ys, states)

    def step_last(self, ys: torch.Tensor, states):
        """``step`` given the prefixes' last labels (N,) (``sos`` for an empty prefix)."""
        n = ys.size(0)
        x = self.lm.encoder(ys)  # (N, units); dropout is off in eval mode
        if states[0] is None:
            zeros = torch.zeros(n, self.units, dtype=x.dtype)
            prev = [(zeros, zeros)] * len(self.layers)
        else:
            st = torch.stack(states)  # (N, layers, 2, units)
            prev = [(st[:, k, 0], st[:, k, 1]) for k in range(len(self.layers))]
        new = []
        for (w_ih, w_hh, b_ih, b_hh), (h, c) in zip(self.layers, prev):
            h, c = torch.lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh)
            new.append(torch.stack([h, c], 1))
            x = h
        logp = self.lm.decoder(x).log_softmax(-1)
        new_states = torch.stack(new, 1)  # (N, layers, 2, units)
        return logp, list(new_states.unbind(0))


class CTCPrefixBeamSearch:
    """Time-synchronous CTC prefix beam search with an optional LM (module docstring).

    Args:
        beam_size: prefixes kept per frame.
        blank, eos: label ids of the blank and of ``<sos/eos>`` (neither is emitted).
        lm: an ESPnet LM scorer (``LMTask`` model's ``.lm``, a ``BatchScorerInterface``), or None.
        lm_weight: weight of the LM log-probability (0 or no LM: CTC only).
        penalty: added per emitted label (ESPnet's ``penalty``, the length bonus).
    """

    def __init__(
        self,
        beam_size: int,
        blank: int,
        eos: int,
        lm: Optional[torch.nn.Module] = None,
        lm_weight: float = 0.0,
        penalty: float = 0.0,
        sos: Optional[int] = None,
    ):
        self.beam_size = beam_size
        self.blank = blank
        self.eos = eos
        self.sos = eos if sos is None else sos
        self.lm_weight = lm_weight if lm is not None else 0.0
        self.lm = None
        if lm is not None and lm_weight != 0:
            self.lm = (_LSTMLMAdapter if _LSTMLMAdapter.supports(lm) else _LMAdapter)(lm, self.sos)
        self.penalty = penalty

    @torch.no_grad()
    def __call__(self, logp: torch.Tensor, nbest: int = 1) -> List[dict]:
        """Decode one utterance. ``logp``: (T, V) CTC log-posteriors.

        Returns up to ``nbest`` dicts, best first: ``labels`` (list of ids), ``score`` (the
        total), ``ctc`` (log-likelihood of the labels), ``lm`` (LM log-prob incl. ``<eos>``)."""
        logp = logp.float()
        T, V = logp.shape
        B = self.beam_size
        w = self.lm_weight
        use_lm = self.lm is not None
        # the labels a prefix can be extended by: neither blank nor <sos/eos>
        ext_mask = torch.zeros(V, dtype=torch.bool)
        ext_mask[self.blank] = True
        ext_mask[self.eos] = True

        prefixes: List[Tuple[int, ...]] = [()]
        pb = torch.zeros(1)  # log P(prefix, ends in blank) up to frame t
        pnb = torch.full((1,), NEG_INF)  # log P(prefix, ends in its last label)
        lm_score = torch.zeros(1)  # LM log-prob of the prefix's labels
        length = torch.zeros(1)
        last = torch.full((1,), -1, dtype=torch.long)
        if use_lm:
            lm_next0, lm_state0 = self.lm.init()
            lm_next = lm_next0.unsqueeze(0)  # (H, V): LM log-prob of each next label
            lm_states = [lm_state0]
            cache = {(): (lm_next0, lm_state0)}

        for t in range(T):
            lp = logp[t]
            H = len(prefixes)
            p_tot = torch.logaddexp(pb, pnb)
            same_pb = p_tot + lp[self.blank]
            has_last = last >= 0
            same_pnb = torch.where(has_last, pnb + lp[last.clamp(min=0)], torch.full_like(pnb, NEG_INF))
            ext = p_tot.unsqueeze(1) + lp.unsqueeze(0)  # (H, V)
            # the same label again right after itself needs a blank in between
            rep = torch.where(has_last, pb + lp[last.clamp(min=0)], torch.full_like(pb, NEG_INF))
            rows = torch.nonzero(has_last).squeeze(1)
            if rows.numel():
                ext[rows, last[rows]] = rep[rows]
            ext[:, ext_mask] = NEG_INF
            # an extension that is already on the beam merges into it
            if H > 1:
                index = {p: i for i, p in enumerate(prefixes)}
                src, lab, dst = [], [], []
                for j, p in enumerate(prefixes):
                    if p:
                        i = index.get(p[:-1])
                        if i is not None:
                            src.append(i)
                            lab.append(p[-1])
                            dst.append(j)
                if src:
                    src_t, lab_t, dst_t = torch.tensor(src), torch.tensor(lab), torch.tensor(dst)
                    same_pnb[dst_t] = torch.logaddexp(same_pnb[dst_t], ext[src_t, lab_t])
                    ext[src_t, lab_t] = NEG_INF
            same_score = torch.logaddexp(same_pb, same_pnb) + self.penalty * length
            ext_score = ext + self.penalty * (length + 1).unsqueeze(1)
            if use_lm:
                same_score = same_score + w * lm_score
                ext_score = ext_score + w * (lm_score.unsqueeze(1) + lm_next)
            cand = torch.cat([same_score, ext_score.reshape(-1)])
            k = min(B, int(torch.isfinite(cand).sum()))
            top = torch.topk(cand, k).indices
            top_l = top.tolist()

            new_prefixes: List[Tuple[int, ...]] = []
            src_rows, is_ext, ext_labels = [], [], []
            for c in top_l:
                if c < H:
                    src_rows.append(c)
                    is_ext.append(False)
                    ext_labels.append(-1)
                    new_prefixes.append(prefixes[c])
                else:
                    i, lab = divmod(c - H, V)
                    src_rows.append(i)
                    is_ext.append(True)
                    ext_labels.append(lab)
                    new_prefixes.append(prefixes[i] + (lab,))
            src_t = torch.tensor(src_rows)
            ext_t = torch.tensor(is_ext)
            lab_t = torch.tensor(ext_labels)
            lab_c = lab_t.clamp(min=0)
            pb = torch.where(ext_t, torch.full((k,), NEG_INF), same_pb[src_t])
            pnb = torch.where(ext_t, ext[src_t, lab_c], same_pnb[src_t])
            length = length[src_t] + ext_t.float()
            last = torch.where(ext_t, lab_t, last[src_t])
            if use_lm:
                lm_score = lm_score[src_t] + torch.where(ext_t, lm_next[src_t, lab_c], torch.zeros(k))
                rows_next = [None] * k
                rows_state = [None] * k
                todo = []
                for j in range(k):
                    if is_ext[j]:
                        hit = cache.get(new_prefixes[j])
                        if hit is None:
                            todo.append(j)
                        else:
                            rows_next[j], rows_state[j] = hit
                    else:
                        rows_next[j], rows_state[j] = lm_next[src_rows[j]], lm_states[src_rows[j]]
                if todo:
                    nxt, st = self.lm.step(
                        [new_prefixes[j] for j in todo], [lm_states[src_rows[j]] for j in todo]
                    )
                    for n, j in enumerate(todo):
                        rows_next[j], rows_state[j] = nxt[n], st[n]
                        cache[new_prefixes[j]] = (nxt[n], st[n])
                lm_next = torch.stack(rows_next)
                lm_states = rows_state
            prefixes = new_prefixes

        # The beam's forward variables miss the alignments that went through prefixes pruned
        # on the way (a lower bound); the finished hypotheses are rescored with the exact CTC
        # log-likelihood (all alignments) and ranked by that, as ESPnet's scores are.
        ctc = exact_ctc_loglik(logp, prefixes, self.blank)
        lm_total = lm_score + lm_next[:, self.eos] if use_lm else torch.zeros_like(ctc)
        final = ctc + w * lm_total + self.penalty * length
        order = torch.argsort(final, descending=True)[:nbest].tolist()
        return [
            dict(labels=list(prefixes[i]), score=float(final[i]), ctc=float(ctc[i]), lm=float(lm_total[i]))
            for i in order
        ]
