"""Bootstrap error bars for WER, over utterances (Bisani & Ney 2004; Koehn 2004).

The unit of resampling is the utterance: a resample draws as many utterances as the test set
has, with replacement, and its WER is the sum of their word errors over the sum of their
reference words. :func:`wer_ci` is the percentile interval of that WER over ``n`` resamples;
:func:`paired_better` draws the same utterances for two systems decoded on one test set and
returns the fraction of resamples in which the first has the lower WER (ties count one half:
identical systems give exactly 0.5). A fixed seed makes both deterministic.

Per-utterance counts come from ``espnet_ext.bin.score``'s ``utt_errors.txt`` (``utt errors
ref_words``), or, for a score folder written before that file existed, from the header
lines of its ``alignment.txt`` (``utt S=.. D=.. I=.. N=..``).
"""

import re
from pathlib import Path
from typing import Dict, Iterator, Sequence, Tuple

import numpy as np

N_RESAMPLES = 1000
SEED = 0
_CHUNK = 2_000_000  # indices drawn at once (bounds memory on large test sets)
_HEADER = re.compile(r"^(\S+) S=(\d+) D=(\d+) I=(\d+) N=(\d+)")


def read_utt_errors(score_dir: Path) -> Dict[str, Tuple[int, int]]:
    """utterance -> (word errors, reference words) of one scored decoding."""
    table = score_dir / "utt_errors.txt"
    out: Dict[str, Tuple[int, int]] = {}
    if table.exists():
        for line in table.read_text(encoding="utf-8").splitlines():
            if line.strip():
                utt, err, n = line.split()
                out[utt] = (int(err), int(n))
        return out
    align = score_dir / "alignment.txt"
    if not align.exists():
        raise FileNotFoundError(f"{score_dir}: neither utt_errors.txt nor alignment.txt")
    for line in align.read_text(encoding="utf-8").splitlines():
        m = _HEADER.match(line)
        if m:
            s, d, i, n = map(int, m.groups()[1:])
            out[m.group(1)] = (s + d + i, n)
    return out


def _resampled_indices(n_utts: int, n: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK // max(n_utts, 1))
    done = 0
    while done < n:
        k = min(per_chunk, n - done)
        yield rng.integers(0, n_utts, size=(k, n_utts))
        done += k


def resampled_wers(
    errors: Sequence[int], words: Sequence[int], n: int = N_RESAMPLES, seed: int = SEED
) -> np.ndarray:
    """WER (percent) of each of ``n`` resamples of the utterances."""
    e, w = np.asarray(errors, dtype=np.float64), np.asarray(words, dtype=np.float64)
    if len(e) == 0:
        raise ValueError("no utterances")
    out = []
    for idx in _resampled_indices(len(e), n, seed):
        out.append(100.0 * e[idx].sum(axis=1) / np.maximum(w[idx].sum(axis=1), 1.0))
    return np.concatenate(out)


def wer_ci(
    errors: Sequence[int], words: Sequence[int], level: float = 0.95, n: int = N_RESAMPLES, seed: int = SEED
) -> Tuple[float, float]:
    """The percentile bootstrap confidence interval of the WER (percent)."""
    wers = resampled_wers(errors, words, n, seed)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(wers, [alpha, 1.0 - alpha])
    return float(low), float(high)


def paired_better(
    errors_a: Sequence[int],
    errors_b: Sequence[int],
    words: Sequence[int],
    n: int = N_RESAMPLES,
    seed: int = SEED,
) -> float:
    """Paired bootstrap: the probability that system A has a lower WER than system B.

    ``errors_a[i]`` and ``errors_b[i]`` are the two systems' errors on the same utterance
    ``i``, which has ``words[i]`` reference words."""
    a, b = np.asarray(errors_a, dtype=np.float64), np.asarray(errors_b, dtype=np.float64)
    if a.shape != b.shape or len(a) != len(words):
        raise ValueError("paired_better needs both systems' errors on the same utterances")
    if len(a) == 0:
        raise ValueError("no utterances")
    wins = 0.0
    for idx in _resampled_indices(len(a), n, seed):
        diff = a[idx].sum(axis=1) - b[idx].sum(axis=1)  # same words in both: compare errors
        wins += float((diff < 0).sum()) + 0.5 * float((diff == 0).sum())
    return wins / n


def paired_from_tables(
    a: Dict[str, Tuple[int, int]], b: Dict[str, Tuple[int, int]], n: int = N_RESAMPLES, seed: int = SEED
) -> Tuple[float, int]:
    """:func:`paired_better` on two :func:`read_utt_errors` tables; also the number of shared
    utterances (both must score the same references)."""
    if set(a) != set(b):
        raise ValueError(f"the two decodings score different utterances ({len(a)} vs {len(b)})")
    utts = sorted(a)
    for u in utts:
        if a[u][1] != b[u][1]:
            raise ValueError(f"utterance {u}: different reference lengths ({a[u][1]} vs {b[u][1]})")
    p = paired_better([a[u][0] for u in utts], [b[u][0] for u in utts], [a[u][1] for u in utts], n, seed)
    return p, len(utts)
