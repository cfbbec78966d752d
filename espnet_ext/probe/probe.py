"""Frozen-encoder probe: a linear CTC head on the encoder's outputs, trained for a fixed small
budget, scored by CER (SUPERB's ASR protocol in miniature: frozen upstream, learnable
weighted sum of the layers or one chosen layer, a small downstream trained on labels).

The encoder is never changed: its parameters get ``requires_grad=False`` and it runs in
eval mode under ``torch.no_grad()`` for the probe's duration (both restored afterwards, so
the probe can run in the middle of pre-training). Its outputs on the probe's utterances are
computed once and cached; the head then trains on the cache, so the cost is one encoder
pass over the probe data plus ``steps`` updates of a (d_model x vocab) layer.

The head predicts characters of the normalized transcript (``espnet_ext.bin.score.normalize``:
upper case letters, digits, apostrophes, spaces); CER is computed as
``espnet_ext.bin.score`` computes it (jiwer, characters of the normalized text).
"""

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import jiwer
import torch

from espnet_ext.bin.score import normalize

logger = logging.getLogger(__name__)

# (feats (B, T, F) padded, lengths (B,), transcripts)
Batch = Tuple[torch.Tensor, torch.Tensor, List[str]]


@dataclass
class ProbeBudget:
    """What a probe run may spend: ``steps`` AdamW updates at ``lr`` (linear warmup over the
    first tenth, then constant), each on one cached batch (the batches are cycled)."""

    steps: int = 300
    lr: float = 5e-3
    weight_decay: float = 0.0
    seed: int = 0


def load_probe_batches(
    data: Union[str, Path],
    text: Optional[Union[str, Path]] = None,
    max_utts: Optional[int] = None,
    batch_size: int = 16,
    root: Optional[Union[str, Path]] = None,
    featurize=None,
) -> List[Batch]:
    """Batches of (features, lengths, transcripts) of a data set.

    ``data``: a ``feats.scp``, a ``wav.scp`` or a directory with one of them
    (:func:`espnet_ext.probe.upstream.iter_utterances`); ``text``: the transcripts (default:
    ``text`` next to the scp). The first ``max_utts`` utterances in key order that have a
    non-empty transcript, batched by length. ``featurize``: applied to each utterance's array
    (e.g. the SSL model's frontend for waveforms); default: the array as features."""
    from espnet_ext.probe.upstream import iter_utterances
    from espnet_ext.utils.kaldi_table import iter_rows

    data = Path(data)
    if text is None:
        text = (data if data.is_dir() else data.parent) / "text"
    texts = {r.key: r.value for r in iter_rows(text) if normalize(r.value)}
    keys = sorted(k for k in texts)
    if max_utts is not None:
        keys = keys[:max_utts]
    wanted = set(keys)
    utts = []
    for key, arr in iter_utterances(data, root):
        if key in wanted:
            x = torch.from_numpy(arr)
            utts.append((featurize(x) if featurize is not None else x.float(), texts[key]))
    utts.sort(key=lambda u: u[0].size(0))
    batches = []
    for i in range(0, len(utts), batch_size):
        chunk = utts[i : i + batch_size]
        lens = torch.tensor([u[0].size(0) for u in chunk])
        feats = torch.nn.utils.rnn.pad_sequence([u[0] for u in chunk], batch_first=True)
        batches.append((feats, lens, [u[1] for u in chunk]))
    return batches


class CharVocab:
    """Blank (id 0) + the characters of normalized transcripts."""

    def __init__(self, texts: Sequence[str]):
        chars = sorted({c for t in texts for c in normalize(t)})
        self.chars = ["<blank>"] + chars
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> List[int]:
        return [self.index[c] for c in normalize(text) if c in self.index]

    def decode(self, ids: Sequence[int]) -> str:
        out, prev = [], 0
        for i in ids:
            if i != prev and i != 0:
                out.append(self.chars[i])
            prev = i
        return " ".join("".join(out).split())


class ProbeHead(torch.nn.Module):
    """Softmax-weighted sum of the chosen layers (one weight each) -> LayerNorm-free linear."""

    def __init__(self, n_layers: int, d_model: int, vocab: int):
        super().__init__()
        self.layer_weights = torch.nn.Parameter(torch.zeros(n_layers))
        self.linear = torch.nn.Linear(d_model, vocab)

    def forward(self, hs: torch.Tensor) -> torch.Tensor:  # hs: (L, B, T, D)
        w = self.layer_weights.softmax(0)
        x = (w[:, None, None, None] * hs).sum(0)
        return self.linear(x).log_softmax(-1)


def encoder_layers(
    encoder: torch.nn.Module,
    feats: torch.Tensor,
    lens: torch.Tensor,
    layers: Union[str, Sequence[Union[int, str]]] = "out",
):
    """The encoder's outputs at ``layers``: a list of (B, T', D) tensors and (B,) lengths.

    ``layers``: ints 1..N (block k's output, before the final LayerNorm), ``"out"`` (the
    encoder's output, what the ASR model sees), or ``"all"`` (1..N and ``"out"``)."""
    (out, hidden), olens, _ = encoder(feats, lens, return_all_hs=True)
    names = layer_names(len(hidden), layers)
    picked = [out if n == "out" else hidden[int(n) - 1] for n in names]
    return picked, olens, names


def layer_names(n_blocks: int, layers: Union[str, Sequence[Union[int, str]]]) -> List[str]:
    if isinstance(layers, str):
        layers = [x for x in layers.split(",") if x]
    names: List[str] = []
    for x in layers:
        x = str(x).strip()
        if x == "all":
            names += [str(k) for k in range(1, n_blocks + 1)] + ["out"]
        elif x == "out":
            names.append("out")
        else:
            k = int(x)
            if not 1 <= k <= n_blocks:
                raise ValueError(f"layer {k}: the encoder has blocks 1..{n_blocks} (and 'out')")
            names.append(str(k))
    if not names:
        raise ValueError("no layers given")
    return list(dict.fromkeys(names))


class _Frozen:
    """Context: the encoder in eval mode, without gradients; its state restored on exit."""

    def __init__(self, encoder: torch.nn.Module):
        self.encoder = encoder

    def __enter__(self):
        self.training = self.encoder.training
        self.flags = [p.requires_grad for p in self.encoder.parameters()]
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder.eval()
        return self.encoder

    def __exit__(self, *exc):
        for p, f in zip(self.encoder.parameters(), self.flags):
            p.requires_grad_(f)
        self.encoder.train(self.training)
        return False


@torch.no_grad()
def _cache(
    encoder, batches: List[Batch], layers, device
) -> List[Tuple[torch.Tensor, torch.Tensor, List[str]]]:
    out = []
    for feats, lens, texts in batches:
        hs, olens, _ = encoder_layers(encoder, feats.to(device), lens.to(device), layers)
        out.append((torch.stack(hs).float().detach(), olens.detach(), texts))
    return out


def run_probe(
    encoder: torch.nn.Module,
    train_batches: List[Batch],
    dev_batches: List[Batch],
    budget: Union[ProbeBudget, int, None] = None,
    layers: Union[str, Sequence[Union[int, str]]] = "all",
    return_details: bool = False,
):
    """Train a linear CTC head on the frozen ``encoder`` and return the dev CER (percent).

    ``train_batches``/``dev_batches``: lists of (feats, lengths, transcripts) (see
    :func:`load_probe_batches`); ``budget``: a :class:`ProbeBudget` (default: its defaults) or a number of updates;
    ``layers``: what the head reads (:func:`encoder_layers`; several layers are combined by
    learned softmax weights, SUPERB's weighted sum). With ``return_details`` a dict is
    returned instead (cer, the head, the layer weights, the losses, seconds)."""
    if budget is None:
        budget = ProbeBudget()
    elif isinstance(budget, int):
        budget = ProbeBudget(steps=budget)
    # the global RNG is left as it was: a probe in the middle of pre-training changes nothing
    # of the training run (dropout masks, data order) but the time it takes
    with torch.random.fork_rng(devices=[]):
        return _run_probe(encoder, train_batches, dev_batches, budget, layers, return_details)


def _run_probe(encoder, train_batches, dev_batches, budget: ProbeBudget, layers, return_details):
    start = time.process_time()
    device = next(encoder.parameters()).device
    vocab = CharVocab([t for _, _, texts in train_batches for t in texts])
    with _Frozen(encoder):
        train = _cache(encoder, train_batches, layers, device)
        dev = _cache(encoder, dev_batches, layers, device)
    n_layers, d_model = train[0][0].size(0), train[0][0].size(-1)
    gen = torch.Generator().manual_seed(budget.seed)
    head = ProbeHead(n_layers, d_model, len(vocab)).to(device)
    with torch.no_grad():  # a seeded init independent of the global RNG
        bound = 1.0 / math.sqrt(d_model)
        head.linear.weight.copy_(torch.empty_like(head.linear.weight).uniform_(-bound, bound, generator=gen))
        head.linear.bias.zero_()
    opt = torch.optim.AdamW(head.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)
    warmup = max(1, budget.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    targets = [[vocab.encode(t) for t in texts] for _, _, texts in train]
    order = torch.randperm(len(train), generator=gen).tolist()
    losses = []
    head.train()
    for step in range(budget.steps):
        b = order[step % len(order)]
        hs, olens, _ = train[b]
        ys = targets[b]
        logp = head(hs)  # (B, T, V)
        ylens = torch.tensor([len(y) for y in ys])
        flat = torch.tensor([i for y in ys for i in y], dtype=torch.long)
        loss = torch.nn.functional.ctc_loss(
            logp.transpose(0, 1), flat, olens.cpu(), ylens, blank=0, reduction="mean", zero_infinity=True
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    head.eval()
    refs, hyps = [], []
    with torch.no_grad():
        for hs, olens, texts in dev:
            best = head(hs).argmax(-1)
            for row, n, t in zip(best.tolist(), olens.tolist(), texts):
                hyps.append(vocab.decode(row[:n]))
                refs.append(normalize(t))
    c = jiwer.process_characters(refs, hyps)
    n_chars = c.hits + c.substitutions + c.deletions
    cer = 100.0 * (c.substitutions + c.deletions + c.insertions) / max(1, n_chars)
    seconds = time.process_time() - start
    logger.info(
        f"probe: CER {cer:.2f} on {len(refs)} utterances after {budget.steps} updates "
        f"(final train loss {losses[-1] if losses else float('nan'):.3f}, {seconds:.1f} CPU s)"
    )
    if return_details:
        return dict(
            cer=cer,
            head=head,
            layer_weights=head.layer_weights.softmax(0).tolist(),
            losses=losses,
            cpu_seconds=seconds,
            n_dev=len(refs),
            hyps=hyps,
            refs=refs,
        )
    return cer
