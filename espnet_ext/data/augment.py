"""Stage 1 for the augmentation sets: MUSAN's noise and RIRS_NOISES' room impulse responses
as Kaldi-style lists that ESPnet's ``CommonPreprocessor`` reads (``--noise_scp``,
``--rir_scp``: ``<id> <path>`` per line).

Layouts (as distributed by OpenSLR 17 and 28; the embedded corpus writes the same ones):

* MUSAN: ``<musan>/<part>/<source>/*.wav`` with parts ``noise``, ``music``, ``speech``.
  Only ``--musan_parts`` are listed (default ``noise``: MUSAN's speech is read speech, which
  as additive "noise" would teach the model to transcribe a second talker).
* RIRS_NOISES: ``<rirs>/simulated_rirs/<room size>/rir_list`` (``--rir-id ID --room-id ROOM
  <path>``, paths relative to the folder holding ``RIRS_NOISES``), else every
  ``simulated_rirs/*/Room*/*.wav``. The real RIRs and isotropic noises are multi-channel
  recordings and are not used.

Every file is checked; a file that cannot be used is listed in ``<out>/rejected`` with its
reason (unreadable, empty, not 16 kHz, more than one channel), and found = kept + rejected.
A re-run over the same files (names and sizes) rewrites nothing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable, List, Sequence, Tuple

import soundfile

from espnet_ext.utils.atomic import write_text_atomic
from espnet_ext.utils.kaldi_table import format_table
from espnet_ext.utils.stamps import DONE_FILE, stamp_matches, write_stamp

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
MUSAN_PARTS = ("noise", "music", "speech")


class AugmentSetError(ValueError):
    """A layout that is not MUSAN's / RIRS_NOISES' (names the folder and what is missing)."""


def musan_files(root: Path, parts: Sequence[str] = ("noise",)) -> List[Tuple[str, Path]]:
    """``(id, path)`` of MUSAN's wavs in ``parts``, ids ``<part>-<file stem>``."""
    bad = [p for p in parts if p not in MUSAN_PARTS]
    if bad:
        raise AugmentSetError(f"MUSAN parts must be among {MUSAN_PARTS}, got {bad}")
    out = []
    for part in parts:
        folder = root / part
        if not folder.is_dir():
            raise AugmentSetError(
                f"{root}: no {part}/ folder: not MUSAN's layout (<musan>/{part}/<source>/*.wav)"
            )
        out += [(f"{part}-{p.stem}", p) for p in sorted(folder.glob("*/*.wav"))]
    return out


def rir_files(root: Path) -> List[Tuple[str, Path]]:
    """``(id, path)`` of RIRS_NOISES' simulated RIRs, from the ``rir_list`` files."""
    sim = root / "simulated_rirs"
    if not sim.is_dir():
        raise AugmentSetError(f"{root}: no simulated_rirs/ folder: not RIRS_NOISES' layout")
    out = []
    for size in sorted(p for p in sim.iterdir() if p.is_dir()):
        rir_list = size / "rir_list"
        if not rir_list.is_file():
            out += [(f"{size.name}-{p.stem}", p) for p in sorted(size.glob("Room*/*.wav"))]
            continue
        for lineno, line in enumerate(rir_list.read_text(encoding="utf-8").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 3 or parts[0] != "--rir-id":
                raise AugmentSetError(f"{rir_list}:{lineno}: expected '--rir-id ID ... <path>', got {line!r}")
            rel = Path(parts[-1])
            # paths are relative to the folder holding RIRS_NOISES (as in the distribution)
            path = root.parent / rel if rel.parts and rel.parts[0] == root.name else root / rel
            out.append((parts[1], path))
    return out


def _check(path: Path) -> str:
    """Why ``path`` cannot be used ("" when it can)."""
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, OSError) as exc:
        return f"unreadable: {exc}".replace("\n", " ")
    if info.frames == 0:
        return "empty"
    if info.samplerate != SAMPLE_RATE:
        return f"{info.samplerate} Hz, not {SAMPLE_RATE}"
    if info.channels != 1:
        return f"{info.channels} channels (the preprocessor adds mono noise and convolves with a mono RIR)"
    return ""


def write_set(files: Iterable[Tuple[str, Path]], out: Path, what: str) -> dict:
    """Check ``files`` and write ``<out>/wav.scp`` and ``<out>/rejected``; returns counts."""
    files = list(files)
    fingerprint = json.dumps([(i, str(p), p.stat().st_size if p.is_file() else -1) for i, p in files])
    done = out / DONE_FILE
    if stamp_matches(done, fingerprint):
        kept = len((out / "wav.scp").read_text().splitlines())
        log.info("%s: already done (%d %s)", out, kept, what)
        return {"found": len(files), "kept": kept, "rejected": len(files) - kept}
    if not files:
        raise AugmentSetError(f"no {what} found for {out}")
    ids = [i for i, _ in files]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise AugmentSetError(f"{out}: duplicate {what} ids, e.g. {dup[0]}")
    kept, rejected = [], []
    for i, p in files:
        reason = _check(p) if p.is_file() else "missing file"
        (rejected if reason else kept).append((i, reason or str(p.resolve())))
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "wav.scp", format_table(kept))
    write_text_atomic(out / "rejected", "".join(f"{i}\t{r}\n" for i, r in sorted(rejected)))
    write_stamp(done, fingerprint)
    log.info("%s: found %d %s = kept %d + rejected %d", out, len(files), what, len(kept), len(rejected))
    if not kept:
        raise AugmentSetError(f"{out}: every {what} was rejected (see {out / 'rejected'})")
    return {"found": len(files), "kept": len(kept), "rejected": len(rejected)}
