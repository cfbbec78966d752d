"""Stage 1's plan: where each set comes from, checked before any work starts.

Each set name is resolved to the first of: an existing ``DATA/<set>`` holding
``wav.scp`` (or, when this stage prepared it from a corpus that is given again, that
corpus); a LibriSpeech folder; Libri-Light's limited-supervision sets (``ll_10min``,
``ll_1h``, ``ll_10h``: ``librispeech_finetuning``) or a Libri-Light subset
(``ll_<subset>``); a Common Voice split (``cv_<split>``).  See :mod:`espnet_ext.data.prepare` for the whole stage.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from espnet_ext.data import librilight, librispeech
from espnet_ext.data.kaldi_dir import CORE_FILES
from espnet_ext.data.rules import MIN_SEGMENT_SECONDS
from espnet_ext.utils.stamps import DONE_FILE, read_record

__all__ = [
    "CORPUS_KINDS",
    "ConfigError",
    "Options",
    "Plan",
    "leftovers",
    "make_plans",
    "parse_combine",
    "resolve_set",
    "root_dir",
]

CORPUS_KINDS = ("librispeech", "librilight", "librilight_finetuning", "commonvoice")
_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ConfigError(ValueError):
    """Bad arguments or unresolvable sets: raised before any work."""


@dataclass(frozen=True)
class Options:
    """The options of stage 1 (``--max_utt_seconds`` etc.)."""

    max_utt_seconds: float = 35.0
    segment_seconds: float = 30.0
    nj: int = 1
    audio_check: str = "full"
    utt2source: bool = False  # combined sets also record each utterance's source set

    def relevant(self, kind: str) -> dict:
        """The options that change the result of a set of this kind."""
        if kind == "librilight":
            return {"segment_seconds": self.segment_seconds, "audio_check": self.audio_check}
        if kind == "combine":
            return {"utt2source": True} if self.utt2source else {}
        return {"max_utt_seconds": self.max_utt_seconds, "audio_check": self.audio_check}


@dataclass
class Plan:
    """Where one set comes from (``source``) and where it goes (``out``)."""

    name: str
    kind: str  # kaldi_dir | librispeech | librilight | commonvoice | combine
    source: Path
    out: Path
    sources: tuple[str, ...] = ()  # the sets a combination is made of


def root_dir(value: Optional[str | Path]) -> Optional[Path]:
    """An absolute path for a ``--<corpus>`` option (None when not given)."""
    return Path(os.path.abspath(value)) if value not in (None, "") else None


def _prefixed_subset(
    name: str, prefix: str, label: str, option: str, root: Optional[Path], looked: list[str]
) -> Optional[str]:
    """The subset named by ``<prefix><subset>`` if ``--<option>`` is given, else None
    (with the reason added to ``looked``)."""
    if not name.startswith(prefix):
        looked.append(f"{label}: set name does not start with '{prefix}'")
        return None
    if root is None:
        looked.append(f"{label}: --{option} not given")
        return None
    return name[len(prefix) :]


def _folder_plan(name: str, kind: str, label: str, folder: Path, looked: list[str]) -> Optional[Plan]:
    """A plan reading ``folder`` if it exists, else None (noted in ``looked``)."""
    if folder.is_dir():
        return Plan(name, kind, folder, Path())
    looked.append(f"{label}: {folder} (no such folder)")
    return None


def _corpus_source(name: str, roots: dict[str, Optional[Path]], looked: list[str]) -> Optional[Plan]:
    ls = roots.get("librispeech")
    if ls is None:
        looked.append("LibriSpeech: --librispeech not given")
    else:
        plan = _folder_plan(name, "librispeech", "LibriSpeech", ls / librispeech.subset_folder(name), looked)
        if plan is not None:
            return plan
    ll = roots.get("librilight")
    if name in librilight.FINETUNING_SETS:
        if ll is None:
            looked.append("Libri-Light limited supervision: --librilight not given")
            return None
        folders, missing = librilight.finetuning_folders(ll, name)
        if not missing:
            return Plan(name, "librilight_finetuning", ll, Path())
        looked.append(
            f"Libri-Light limited supervision: {', '.join(str(m) for m in missing)} "
            f"(no such folder; from librispeech_finetuning.tgz)"
        )
        return None
    subset = _prefixed_subset(name, "ll_", "Libri-Light", "librilight", ll, looked)
    if subset is not None:
        plan = _folder_plan(name, "librilight", "Libri-Light", ll / subset, looked)
        if plan is not None:
            return plan
    cv = roots.get("commonvoice")
    split = _prefixed_subset(name, "cv_", "Common Voice", "commonvoice", cv, looked)
    if split is not None:
        tsv = cv / f"{split}.tsv"
        if not tsv.is_file():
            looked.append(f"Common Voice: {tsv} (no such file)")
        elif not (cv / "clips").is_dir():
            looked.append(f"Common Voice: {tsv} exists but {cv / 'clips'} does not")
        else:
            return Plan(name, "commonvoice", cv, Path())
    return None


def leftovers(d: Path) -> list[str]:
    """Files in ``d`` this stage did not write (so must not be deleted)."""
    if not d.exists():
        return []
    ours = set(CORE_FILES) | {DONE_FILE}
    return sorted(p.name for p in d.iterdir() if p.name not in ours)


def resolve_set(
    name: str, datadir: Path, roots: dict[str, Optional[Path]], errors: list[str]
) -> Optional[Plan]:
    """Where set ``name`` comes from (see the module docstring); problems go to ``errors``."""
    out = datadir / name
    looked: list[str] = []
    corpus = _corpus_source(name, roots, looked)
    if (out / "wav.scp").is_file():
        done = read_record(out / DONE_FILE)
        if (
            done
            and done.get("kind") in CORPUS_KINDS
            and corpus is not None
            and corpus.kind == done.get("kind")
        ):
            corpus.out = out
            return corpus
        return Plan(name, "kaldi_dir", out, out)
    looked.insert(0, f"existing data dir: {out / 'wav.scp'} (no such file)")
    if corpus is None:
        errors.append(f"set '{name}': no source found. Looked at:\n    " + "\n    ".join(looked))
        return None
    extra = leftovers(out)
    if extra:
        errors.append(
            f"set '{name}': {out} exists without wav.scp but holds {', '.join(extra)}; move it away"
        )
        return None
    corpus.out = out
    return corpus


def parse_combine(spec: str) -> list[tuple[str, list[str]]]:
    """``"dst=a,b dst2=c"`` -> [("dst", ["a", "b"]), ("dst2", ["c"])]."""
    out = []
    for item in spec.split():
        dst, eq, srcs = item.partition("=")
        names = [s for s in srcs.split(",") if s]
        if not eq or not dst or not names:
            raise ConfigError(f"--combine: '{item}' is not of the form dst=set1,set2")
        out.append((dst, names))
    return out


def make_plans(
    datadir: Path,
    sets: Sequence[str],
    combine: Sequence[tuple[str, list[str]]],
    roots: dict[str, Optional[Path]],
    options: Options,
) -> list[Plan]:
    """Resolve every set and combination, or raise ConfigError listing all problems."""
    errors: list[str] = []
    if options.max_utt_seconds <= 0:
        errors.append(f"--max_utt_seconds must be positive, got {options.max_utt_seconds}")
    if options.segment_seconds < 2 * MIN_SEGMENT_SECONDS:
        errors.append(
            f"--segment_seconds must be at least {2 * MIN_SEGMENT_SECONDS}, got {options.segment_seconds}"
        )
    if options.nj < 1:
        errors.append(f"--nj must be at least 1, got {options.nj}")
    if options.audio_check not in ("full", "header"):
        errors.append(f"--audio_check must be full or header, got {options.audio_check}")
    for key, root in [("datadir", datadir), *roots.items()]:
        if root is not None and any(ch.isspace() for ch in str(root)):
            errors.append(f"--{key} {root}: whitespace in the path (Kaldi files cannot hold it)")
        elif root is not None and key != "datadir" and not root.is_dir():
            errors.append(f"--{key} {root}: no such directory")
    if not sets and not combine:
        errors.append("--sets is empty and there is nothing to --combine")
    names = list(sets) + [dst for dst, _ in combine]
    for n in names:
        if not _SET_NAME.match(n):
            errors.append(f"set name '{n}' is not usable as a folder name ([A-Za-z0-9][A-Za-z0-9_.-]*)")
    for n in sorted({n for n in names if names.count(n) > 1}):
        errors.append(f"set '{n}' is named more than once in --sets/--combine")
    if errors:
        raise ConfigError("\n".join(errors))

    plans = [p for p in (resolve_set(n, datadir, roots, errors) for n in sets) if p is not None]
    available = set(sets)
    for dst, srcs in combine:
        out = datadir / dst
        for s in srcs:
            if s not in available and not (datadir / s / "wav.scp").is_file():
                errors.append(
                    f"--combine {dst}: source set '{s}' is not in --sets, not combined earlier, "
                    f"and {datadir / s / 'wav.scp'} does not exist"
                )
        if len(set(srcs)) != len(srcs):
            errors.append(f"--combine {dst}: a source set is named twice")
        done = read_record(out / DONE_FILE)
        if out.exists() and any(out.iterdir()) and (done is None or done.get("kind") != "combine"):
            errors.append(
                f"--combine {dst}: {out} exists and was not made by --combine; refusing to overwrite it"
            )
        plans.append(Plan(dst, "combine", datadir, out, tuple(srcs)))
        available.add(dst)
    if errors:
        raise ConfigError("\n".join(errors))
    return plans
