"""Stage 1: prepare Kaldi-style data dirs from corpora or existing dirs.

Usage::

    python -m espnet_ext.data.prepare --datadir data --sets "dev_clean ll_small cv_train" \\
        [--combine "pretrain=unlabeled,ll_small"] [--librispeech ROOT] [--librilight ROOT] \\
        [--commonvoice ROOT] [--max_utt_seconds 35] [--segment_seconds 30] [--nj 4] \\
        [--audio_check full|header]

Each set name is resolved, before any work starts, to the first of:

1. ``DATA/<set>`` holding ``wav.scp`` (the user's own Kaldi-style dir, or a
   set prepared before): its rules are applied, derived files (spk2utt,
   utt2num_samples) finished and it is validated (``existing.py``). A set
   this stage prepared before from a corpus that is given again is checked
   against that corpus instead.
2. LibriSpeech: ``--librispeech ROOT`` and folder ``ROOT/<set, _ -> ->``
   (``librispeech.py``).
3. Libri-Light: set ``ll_<subset>`` and folder ``LIBRILIGHT/<subset>``
   (``librilight.py``).
4. Common Voice: set ``cv_<split>`` and ``COMMONVOICE/<split>.tsv``
   (``commonvoice.py``).

A set with no source fails the run before any work, naming every place
looked. Then ``--combine "dst=a,b"`` builds ``DATA/dst`` from prepared sets
(``kaldi_dir.combine_data_dirs``).

Bad input follows the rules of ``rules.py``: items are repaired or rejected
(``DATA/<set>/rejected``) and the run carries on; per set the log gives
found, kept, repaired (by rule) and rejected (by rule), and
``found == kept + rejected`` is asserted. Every result is validated
(``kaldi_dir.validate_data_dir``).

Re-runs: each finished set gets ``DATA/<set>/.done`` holding a fingerprint of
its inputs (file listing with sizes and mtimes, or the existing dir's files
and audio stats), the options that matter and the output files' digests; a
matching set is skipped without touching any file. Corpus sets and combined
sets are built in a hidden staging dir and swapped into place, so an
interrupted run never leaves a half-written set; files of an existing dir
are each replaced atomically.

Exit status: 0 done; 1 some set failed (the others were still prepared);
2 bad configuration (nothing was done).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from espnet_ext.data import commonvoice, existing, librilight, librispeech
from espnet_ext.data.audio import probe_many
from espnet_ext.data.kaldi_dir import (
    CORE_FILES,
    DONE_FILE,
    CombineError,
    DataDirError,
    combine_data_dirs,
    files_digest,
    read_done,
    validate_data_dir,
    write_data_dir,
    write_done,
)
from espnet_ext.data.pipeline import Outcome, Scan, apply_rules
from espnet_ext.data.rules import MIN_SEGMENT_SECONDS, RULES_VERSION

logger = logging.getLogger("espnet_ext.data.prepare")

CORPUS_KINDS = ("librispeech", "librilight", "commonvoice")
_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ConfigError(ValueError):
    """Bad arguments or unresolvable sets: raised before any work."""


class SetError(RuntimeError):
    """One set could not be prepared (the others still are)."""


@dataclass(frozen=True)
class Options:
    max_utt_seconds: float = 35.0
    segment_seconds: float = 30.0
    nj: int = 1
    audio_check: str = "full"

    def relevant(self, kind: str) -> dict:
        """The options that change the result of a set of this kind."""
        if kind == "librilight":
            return {"segment_seconds": self.segment_seconds, "audio_check": self.audio_check}
        if kind == "combine":
            return {}
        return {"max_utt_seconds": self.max_utt_seconds, "audio_check": self.audio_check}


@dataclass
class Plan:
    name: str
    kind: str  # kaldi_dir | librispeech | librilight | commonvoice | combine
    source: Path
    out: Path
    sources: tuple[str, ...] = ()


@dataclass
class SetReport:
    name: str
    kind: str
    skipped: bool = False
    found: int = 0
    kept: int = 0
    rejected: dict = field(default_factory=dict)
    repaired: dict = field(default_factory=dict)
    utterances: int = 0
    segments_dropped: int = 0


# ---------------------------------------------------------------- planning


def _root(value: Optional[str | Path]) -> Optional[Path]:
    return Path(os.path.abspath(value)) if value not in (None, "") else None


def _corpus_source(name: str, roots: dict[str, Optional[Path]], looked: list[str]) -> Optional[Plan]:
    ls = roots.get("librispeech")
    if ls is None:
        looked.append("LibriSpeech: --librispeech not given")
    else:
        folder = ls / librispeech.subset_folder(name)
        if folder.is_dir():
            return Plan(name, "librispeech", folder, Path())
        looked.append(f"LibriSpeech: {folder} (no such folder)")
    ll = roots.get("librilight")
    if not name.startswith("ll_"):
        looked.append("Libri-Light: set name does not start with 'll_'")
    elif ll is None:
        looked.append("Libri-Light: --librilight not given")
    else:
        folder = ll / name[len("ll_") :]
        if folder.is_dir():
            return Plan(name, "librilight", folder, Path())
        looked.append(f"Libri-Light: {folder} (no such folder)")
    cv = roots.get("commonvoice")
    if not name.startswith("cv_"):
        looked.append("Common Voice: set name does not start with 'cv_'")
    elif cv is None:
        looked.append("Common Voice: --commonvoice not given")
    else:
        tsv = cv / f"{name[len('cv_'):]}.tsv"
        if not tsv.is_file():
            looked.append(f"Common Voice: {tsv} (no such file)")
        elif not (cv / "clips").is_dir():
            looked.append(f"Common Voice: {tsv} exists but {cv / 'clips'} does not")
        else:
            return Plan(name, "commonvoice", cv, Path())
    return None


def _leftovers(d: Path) -> list[str]:
    """Files in ``d`` this stage did not write (so must not be deleted)."""
    if not d.exists():
        return []
    ours = set(CORE_FILES) | {DONE_FILE}
    return sorted(p.name for p in d.iterdir() if p.name not in ours)


def resolve_set(name: str, datadir: Path, roots: dict[str, Optional[Path]], errors: list[str]) -> Optional[Plan]:
    """Where set ``name`` comes from (see the module docstring); problems go to ``errors``."""
    out = datadir / name
    looked: list[str] = []
    corpus = _corpus_source(name, roots, looked)
    if (out / "wav.scp").is_file():
        done = read_done(out)
        if done and done.get("kind") in CORPUS_KINDS and corpus is not None and corpus.kind == done.get("kind"):
            corpus.out = out
            return corpus
        return Plan(name, "kaldi_dir", out, out)
    looked.insert(0, f"existing data dir: {out / 'wav.scp'} (no such file)")
    if corpus is None:
        errors.append(f"set '{name}': no source found. Looked at:\n    " + "\n    ".join(looked))
        return None
    extra = _leftovers(out)
    if extra:
        errors.append(f"set '{name}': {out} exists without wav.scp but holds {', '.join(extra)}; move it away")
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
        errors.append(f"--segment_seconds must be at least {2 * MIN_SEGMENT_SECONDS}, got {options.segment_seconds}")
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
        done = read_done(out)
        if out.exists() and any(out.iterdir()) and (done is None or done.get("kind") != "combine"):
            errors.append(f"--combine {dst}: {out} exists and was not made by --combine; refusing to overwrite it")
        plans.append(Plan(dst, "combine", datadir, out, tuple(srcs)))
        available.add(dst)
    if errors:
        raise ConfigError("\n".join(errors))
    return plans


# ---------------------------------------------------------------- running


def _fingerprint(inputs: dict, out: Path) -> str:
    blob = json.dumps({"inputs": inputs, "outputs": files_digest(out)}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _stat_listing(paths: Sequence[str]) -> list[tuple[str, int, int]]:
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((p, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((p, -1, -1))
    return out


def _report_from_done(plan: Plan, done: dict) -> SetReport:
    counts = done.get("counts", {})
    return SetReport(
        plan.name,
        plan.kind,
        skipped=True,
        **{k: counts[k] for k in ("found", "kept", "rejected", "repaired", "utterances", "segments_dropped") if k in counts},
    )


def _swap(staging: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        os.rename(out, old)
    os.rename(staging, out)
    if old.exists():
        shutil.rmtree(old)


def _scan(plan: Plan, options: Options) -> Scan:
    if plan.kind == "librispeech":
        return librispeech.scan_librispeech(plan.source)
    if plan.kind == "librilight":
        return librilight.scan_librilight(plan.source, segment_seconds=options.segment_seconds)
    if plan.kind == "commonvoice":
        return commonvoice.scan_commonvoice(plan.source, plan.name[len("cv_") :])
    if plan.kind == "kaldi_dir":
        try:
            return existing.scan_existing(plan.source)
        except existing.ExistingDirError as e:
            raise SetError(f"set '{plan.name}': cannot read {plan.source}:\n{e}") from e
    raise AssertionError(plan.kind)


def _outcome(plan: Plan, scan: Scan, options: Options, label: str) -> Outcome:
    paths = [c.path for c in scan.candidates if c.problem is None and c.path]
    infos = probe_many(paths, nj=options.nj, check=options.audio_check, label=plan.name)
    outcome = apply_rules(
        scan.candidates,
        infos,
        labeled=scan.labeled,
        max_utt_seconds=options.max_utt_seconds,
        segmenter=scan.segmenter,
    )
    outcome.check(label)
    logger.info("%s: %s", label, outcome.summary())
    if outcome.kept == 0:
        first = "\n    ".join(f"{i}\t{r}" for i, r in sorted(outcome.data.rejected)[:5])
        raise SetError(f"{label}: all {outcome.found} items were rejected, e.g.:\n    {first}")
    return outcome


def _counts(outcome: Outcome) -> dict:
    return {
        "found": outcome.found,
        "kept": outcome.kept,
        "rejected": dict(sorted(outcome.rejected.items())),
        "repaired": dict(sorted(outcome.repaired.items())),
        "utterances": len(outcome.data.utt2spk),
        "segments_dropped": outcome.segments_dropped,
    }


def _validate(d: Path, label: str) -> None:
    try:
        summary = validate_data_dir(d)
    except DataDirError as e:
        raise SetError(f"{label}: the written data dir does not validate:\n{e}") from e
    logger.info(
        "%s: valid: %d utterances, %d speakers, %d recordings, %.2f h%s%s",
        label,
        summary.utterances,
        summary.speakers,
        summary.recordings,
        summary.hours,
        ", labeled" if summary.labeled else ", unlabeled",
        ", segmented" if summary.segmented else "",
    )


def _run_corpus(plan: Plan, options: Options) -> SetReport:
    label = f"{plan.name} ({plan.kind}: {plan.source})"
    scan = _scan(plan, options)
    inputs = {
        "kind": plan.kind,
        "source": str(plan.source),
        "listing": scan.listing,
        "options": options.relevant(plan.kind),
        "rules_version": RULES_VERSION,
    }
    done = read_done(plan.out)
    if done and done.get("fingerprint") == _fingerprint(inputs, plan.out):
        logger.info("%s: already done, nothing changed", label)
        return _report_from_done(plan, done)
    outcome = _outcome(plan, scan, options, label)
    staging = plan.out.parent / f".{plan.name}.staging"
    if staging.exists():
        shutil.rmtree(staging)
    write_data_dir(outcome.data, staging)
    _validate(staging, label)
    counts = _counts(outcome)
    write_done(
        staging,
        {
            "kind": plan.kind,
            "source": str(plan.source),
            "options": options.relevant(plan.kind),
            "rules_version": RULES_VERSION,
            "counts": counts,
            "fingerprint": _fingerprint(inputs, staging),
        },
    )
    _swap(staging, plan.out)
    return SetReport(plan.name, plan.kind, **counts)


def _existing_inputs(plan: Plan, options: Options) -> dict:
    return {
        "kind": "kaldi_dir",
        "options": options.relevant("kaldi_dir"),
        "rules_version": RULES_VERSION,
        "audio": _stat_listing(existing.audio_paths(plan.out)),
    }


def _run_existing(plan: Plan, options: Options) -> SetReport:
    label = f"{plan.name} (existing data dir {plan.out})"
    done = read_done(plan.out)
    try:
        inputs = _existing_inputs(plan, options)
    except existing.ExistingDirError as e:
        raise SetError(f"set '{plan.name}': cannot read {plan.out}:\n{e}") from e
    if done and done.get("fingerprint") == _fingerprint(inputs, plan.out):
        logger.info("%s: already done, nothing changed", label)
        return _report_from_done(plan, done)
    scan = _scan(plan, options)
    outcome = _outcome(plan, scan, options, label)
    old_rejected = []
    if (plan.out / "rejected").is_file():
        for line in (plan.out / "rejected").read_text(encoding="utf-8").splitlines():
            if "\t" in line:
                old_rejected.append(tuple(line.split("\t", 1)))
    outcome.data.rejected = old_rejected + outcome.data.rejected
    changed = write_data_dir(outcome.data, plan.out, backup_dir=plan.out / ".orig")
    if changed:
        logger.info("%s: wrote %s (originals kept in %s)", label, ", ".join(changed), plan.out / ".orig")
    others = _leftovers(plan.out)
    others = [o for o in others if o != ".orig"]
    if others and (outcome.rejected or outcome.repaired.get("speaker_prefix")):
        logger.warning(
            "%s: utterances were removed or renamed; %s were left as they are and may no longer match",
            label,
            ", ".join(others),
        )
    _validate(plan.out, label)
    counts = _counts(outcome)
    write_done(
        plan.out,
        {
            "kind": "kaldi_dir",
            "source": str(plan.out),
            "options": options.relevant("kaldi_dir"),
            "rules_version": RULES_VERSION,
            "counts": counts,
            "fingerprint": _fingerprint(_existing_inputs(plan, options), plan.out),
        },
    )
    return SetReport(plan.name, plan.kind, **counts)


def _run_combine(plan: Plan, options: Options) -> SetReport:
    label = f"{plan.name} (combine {','.join(plan.sources)})"
    srcs = [(s, plan.source / s) for s in plan.sources]
    inputs = {
        "kind": "combine",
        "sources": [(s, (read_done(p) or {}).get("fingerprint") or files_digest(p)) for s, p in srcs],
        "rules_version": RULES_VERSION,
    }
    done = read_done(plan.out)
    if done and done.get("fingerprint") == _fingerprint(inputs, plan.out):
        logger.info("%s: already done, nothing changed", label)
        return _report_from_done(plan, done)
    try:
        data = combine_data_dirs(srcs)
    except (CombineError, DataDirError) as e:
        raise SetError(f"{label}: {e}") from e
    staging = plan.out.parent / f".{plan.name}.staging"
    if staging.exists():
        shutil.rmtree(staging)
    write_data_dir(data, staging)
    _validate(staging, label)
    n = len(data.utt2spk)
    counts = {"found": n, "kept": n, "rejected": {}, "repaired": {}, "utterances": n, "segments_dropped": 0}
    write_done(
        staging,
        {
            "kind": "combine",
            "source": ",".join(plan.sources),
            "options": {},
            "rules_version": RULES_VERSION,
            "counts": counts,
            "fingerprint": _fingerprint(inputs, staging),
        },
    )
    _swap(staging, plan.out)
    logger.info("%s: %d utterances%s", label, n, "" if data.text is not None else ", no text")
    return SetReport(plan.name, plan.kind, **counts)


def run_plan(plan: Plan, options: Options) -> SetReport:
    if plan.kind == "combine":
        return _run_combine(plan, options)
    if plan.kind == "kaldi_dir":
        return _run_existing(plan, options)
    return _run_corpus(plan, options)


def prepare(
    datadir: str | Path,
    sets: Sequence[str],
    *,
    combine: str = "",
    librispeech_root: Optional[str | Path] = None,
    librilight_root: Optional[str | Path] = None,
    commonvoice_root: Optional[str | Path] = None,
    options: Options = Options(),
) -> tuple[list[SetReport], list[str]]:
    """Prepare ``sets`` (then the ``combine`` spec) under ``datadir``.

    Returns:
        (reports of the sets done, error messages of the sets that failed).

    Raises:
        ConfigError: before any work, if an argument or a set is unusable.
    """
    datadir = Path(os.path.abspath(datadir))
    roots = {
        "librispeech": _root(librispeech_root),
        "librilight": _root(librilight_root),
        "commonvoice": _root(commonvoice_root),
    }
    plans = make_plans(datadir, list(sets), parse_combine(combine), roots, options)
    datadir.mkdir(parents=True, exist_ok=True)
    reports: list[SetReport] = []
    failures: list[str] = []
    failed: set[str] = set()
    for plan in plans:
        bad = [s for s in plan.sources if s in failed]
        if bad:
            failures.append(f"{plan.name}: not combined because {', '.join(bad)} failed")
            failed.add(plan.name)
            continue
        try:
            reports.append(run_plan(plan, options))
        except SetError as e:
            logger.error("%s", e)
            failures.append(str(e))
            failed.add(plan.name)
    return reports, failures


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m espnet_ext.data.prepare",
        description="Prepare Kaldi-style data dirs (stage 1). See the module docstring for the rules.",
    )
    p.add_argument("--datadir", required=True, help="where DATA/<set> dirs are written")
    p.add_argument("--sets", required=True, help='space-separated set names, e.g. "dev_clean ll_small cv_train"')
    p.add_argument("--combine", default="", help='"dst=a,b dst2=c,d": combine prepared sets')
    p.add_argument("--librispeech", default=None, help="LibriSpeech-layout root (holds dev-clean/, ...)")
    p.add_argument("--librilight", default=None, help="Libri-Light root (holds small/, medium/, ...)")
    p.add_argument("--commonvoice", default=None, help="Common Voice language folder (clips/, *.tsv)")
    p.add_argument("--max_utt_seconds", type=float, default=35.0, help="reject longer utterances")
    p.add_argument("--segment_seconds", type=float, default=30.0, help="Libri-Light segment length limit")
    p.add_argument("--nj", type=int, default=1, help="parallel audio-check processes")
    p.add_argument(
        "--audio_check", choices=("full", "header"), default="full", help="decode every file (full) or read headers"
    )
    p.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
    )
    options = Options(
        max_utt_seconds=args.max_utt_seconds,
        segment_seconds=args.segment_seconds,
        nj=args.nj,
        audio_check=args.audio_check,
    )
    try:
        reports, failures = prepare(
            args.datadir,
            args.sets.split(),
            combine=args.combine,
            librispeech_root=args.librispeech,
            librilight_root=args.librilight,
            commonvoice_root=args.commonvoice,
            options=options,
        )
    except ConfigError as e:
        print(f"prepare: error (nothing was done):\n{e}", file=sys.stderr)
        return 2
    for r in reports:
        logger.info("%s: %s", r.name, json.dumps({k: v for k, v in asdict(r).items() if k != "name"}))
    if failures:
        print(f"prepare: {len(failures)} set(s) failed:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
