"""The pre-trained encoder as an upstream: built through ESPnet's SSL task from a training
config (+ checkpoint), and fed utterances of a ``feats.scp`` or of a data dir's ``wav.scp``.

Input goes through the SSL model's own front (``_extract_feats``: the ``logmel`` frontend
turns a waveform into the recipe's log-Mel features and passes features through; then its
``normalize``, ``null`` in the shipped configs), so an encoder sees what it saw in training.
"""

import logging
import re
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import numpy as np
import torch

logger = logging.getLogger(__name__)


def load_ssl_model(
    config: Union[str, Path],
    model_file: Optional[Union[str, Path]] = None,
    seed: int = 0,
    device: str = "cpu",
):
    """The SSL model of ``config`` (``<exp>/config.yaml`` or a training config with an inline
    or existing token list), with ``model_file``'s weights, or randomly initialized with
    ``seed`` when ``model_file`` is None (the baseline of the probe). Eval mode."""
    import espnet_ext
    from espnet_ext.tasks.ssl import SSLTask

    espnet_ext.register()
    torch.manual_seed(seed)
    model, args = SSLTask.build_model_from_file(config, model_file, device)
    model.eval()
    return model, args


def front(model, speech: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Waveforms (B, N) or features (B, T, F) -> the encoder's input features."""
    feats, lens = model._extract_feats(speech, lengths)
    if getattr(model, "normalize", None) is not None:
        feats, lens = model.normalize(feats, lens)
    return feats, lens


def _resolve(path: str, root: Optional[Path]) -> str:
    if root is None:
        return path
    head = path.split(":")[0]
    return path if Path(head).is_absolute() else str(root / path)


def iter_utterances(
    data: Union[str, Path], root: Optional[Union[str, Path]] = None
) -> Iterator[Tuple[str, np.ndarray]]:
    """(key, array) per utterance of ``data``: a ``feats.scp`` (kaldi_ark, (T, F) features),
    a ``wav.scp`` (audio files, or stage 2's audio shards ``<ark>:<offset>``; (N,) float
    waveforms) or a directory holding one of them
    (``feats.scp`` preferred). Relative paths in the scp resolve against ``root``."""
    import kaldiio
    import soundfile

    from espnet_ext.utils.kaldi_table import iter_rows

    data = Path(data)
    if data.is_dir():
        data = data / "feats.scp" if (data / "feats.scp").is_file() else data / "wav.scp"
    root = Path(root) if root is not None else None
    if data.name.startswith("wav"):
        for r in iter_rows(data):
            path = r.value.strip()
            if path.endswith("|"):
                raise ValueError(f"{data}:{r.lineno}: piped wav.scp entries are not supported")
            if re.search(r"\.ark:\d+$", path):  # stage 2's audio shards (kaldiio audio entries)
                _rate, wav = kaldiio.load_mat(_resolve(path, root))
                wav = np.asarray(wav, dtype=np.float32)
            else:
                wav, _rate = soundfile.read(_resolve(path, root), dtype="float32")
            yield r.key, wav if wav.ndim == 1 else wav[:, 0]
    else:
        for r in iter_rows(data):
            yield (
                r.key,
                np.array(kaldiio.load_mat(_resolve(r.value, root)), dtype=np.float32),
            )  # a writable copy


def batched(
    items: Iterator[Tuple[str, np.ndarray]], batch_size: int
) -> Iterator[Tuple[List[str], torch.Tensor, torch.Tensor]]:
    """Padded batches (keys, (B, ...) tensor, (B,) lengths) in input order."""
    chunk: List[Tuple[str, np.ndarray]] = []

    def emit():
        keys = [k for k, _ in chunk]
        arrays = [torch.from_numpy(a) for _, a in chunk]
        lens = torch.tensor([a.shape[0] for a in arrays])
        return keys, torch.nn.utils.rnn.pad_sequence(arrays, batch_first=True), lens

    for item in items:
        chunk.append(item)
        if len(chunk) == batch_size:
            yield emit()
            chunk = []
    if chunk:
        yield emit()
