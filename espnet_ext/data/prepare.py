"""Stage 1: prepare Kaldi-style data dirs from corpora or existing dirs.

Usage::

    python -m espnet_ext.bin.prepare_data --datadir data --sets "dev_clean ll_small cv_train" \\
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
3. Libri-Light: ``ll_10min``, ``ll_1h``, ``ll_10h``, the limited-supervision sets
   (labeled; ``LIBRILIGHT/librispeech_finetuning``: 10min = 1h/0, 1h = 1h/0-5,
   10h = 1h + 9h), or set ``ll_<subset>`` and folder ``LIBRILIGHT/<subset>``
   (``librilight.py``).
4. Common Voice: set ``cv_<split>`` and ``COMMONVOICE/<split>.tsv``
   (``commonvoice.py``).

A set with no source fails the run before any work, naming every place
looked (``plan.py``). Then ``--combine "dst=a,b"`` builds ``DATA/dst`` from
prepared sets (``combine.combine_data_dirs``).

Bad input follows the rules of ``rules.py``: items are repaired or rejected
(``DATA/<set>/rejected``) and the run carries on; per set the log gives
found, kept, repaired (by rule) and rejected (by rule), and
``found == kept + rejected`` is asserted. Every result is validated
(``validate.validate_data_dir``).

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

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from espnet_ext.data import commonvoice, existing, librilight, librispeech
from espnet_ext.data.audio import probe_many
from espnet_ext.data.combine import CombineError, combine_data_dirs, read_data_dir
from espnet_ext.data.kaldi_dir import DataDir, files_digest, write_data_dir
from espnet_ext.data.pipeline import Outcome, Scan, apply_rules
from espnet_ext.data.plan import ConfigError, Options, Plan, leftovers, make_plans, parse_combine, root_dir
from espnet_ext.data.rules import RULES_VERSION
from espnet_ext.data.validate import DataDirError, validate_data_dir
from espnet_ext.utils.kaldi_table import read_rejected
from espnet_ext.utils.stamps import DONE_FILE, json_digest, read_record, write_record

__all__ = ["ConfigError", "Options", "SetError", "SetReport", "prepare", "run_plan"]

logger = logging.getLogger("espnet_ext.data.prepare")

_COUNT_KEYS = ("found", "kept", "rejected", "repaired", "utterances", "segments_dropped")


class SetError(RuntimeError):
    """One set could not be prepared (the others still are)."""


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


def _fingerprint(inputs: dict, out: Path) -> str:
    return json_digest({"inputs": inputs, "outputs": files_digest(out)})


def _stat_listing(paths: Sequence[str]) -> list[tuple[str, int, int]]:
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((p, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((p, -1, -1))
    return out


def _already_done(plan: Plan, inputs: dict, label: str) -> Optional[SetReport]:
    """The report of a set whose ``.done`` matches ``inputs`` and its files, else None."""
    done = read_record(plan.out / DONE_FILE)
    if not done or done.get("fingerprint") != _fingerprint(inputs, plan.out):
        return None
    logger.info("%s: already done, nothing changed", label)
    counts = done.get("counts", {})
    return SetReport(plan.name, plan.kind, skipped=True, **{k: counts[k] for k in _COUNT_KEYS if k in counts})


def _write_done(d: Path, kind: str, source: str, options: dict, counts: dict, inputs: dict) -> None:
    """Mark ``d`` done: its kind, source, options and counts, and the fingerprint of
    ``inputs`` with ``d``'s files as they are now."""
    record = {
        "kind": kind,
        "source": source,
        "options": options,
        "rules_version": RULES_VERSION,
        "counts": counts,
        "fingerprint": _fingerprint(inputs, d),
    }
    write_record(d / DONE_FILE, record)


def _swap(staging: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        os.rename(out, old)
    os.rename(staging, out)
    if old.exists():
        shutil.rmtree(old)


def _publish(
    plan: Plan,
    data: DataDir,
    label: str,
    source: str,
    counts: dict,
    inputs: dict,
    extra: Optional[dict] = None,
) -> None:
    """Write ``data`` (and the ``extra`` files, name -> content) into a staging dir,
    validate it, mark it done and swap it into place."""
    staging = plan.out.parent / f".{plan.name}.staging"
    if staging.exists():
        shutil.rmtree(staging)
    write_data_dir(data, staging)
    for name, content in (extra or {}).items():
        (staging / name).write_text(content, encoding="utf-8")
    _validate(staging, label)
    _write_done(staging, plan.kind, source, inputs.get("options", {}), counts, inputs)
    _swap(staging, plan.out)


def _scan(plan: Plan, options: Options) -> Scan:
    if plan.kind == "librispeech":
        return librispeech.scan_librispeech(plan.source)
    if plan.kind == "librilight":
        return librilight.scan_librilight(plan.source, segment_seconds=options.segment_seconds)
    if plan.kind == "librilight_finetuning":
        return librilight.scan_finetuning(plan.source, plan.name)
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
    skipped = _already_done(plan, inputs, label)
    if skipped is not None:
        return skipped
    outcome = _outcome(plan, scan, options, label)
    counts = _counts(outcome)
    _publish(plan, outcome.data, label, str(plan.source), counts, inputs)
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
    try:
        inputs = _existing_inputs(plan, options)
    except existing.ExistingDirError as e:
        raise SetError(f"set '{plan.name}': cannot read {plan.out}:\n{e}") from e
    skipped = _already_done(plan, inputs, label)
    if skipped is not None:
        return skipped
    scan = _scan(plan, options)
    outcome = _outcome(plan, scan, options, label)
    old_rejected = read_rejected(plan.out / "rejected") if (plan.out / "rejected").is_file() else []
    outcome.data.rejected = old_rejected + outcome.data.rejected
    changed = write_data_dir(outcome.data, plan.out, backup_dir=plan.out / ".orig")
    if changed:
        logger.info("%s: wrote %s (originals kept in %s)", label, ", ".join(changed), plan.out / ".orig")
    others = [o for o in leftovers(plan.out) if o != ".orig"]
    if others and (outcome.rejected or outcome.repaired.get("speaker_prefix")):
        logger.warning(
            "%s: utterances were removed or renamed; %s were left as they are and may no longer match",
            label,
            ", ".join(others),
        )
    _validate(plan.out, label)
    counts = _counts(outcome)
    inputs = _existing_inputs(plan, options)
    _write_done(plan.out, "kaldi_dir", str(plan.out), inputs["options"], counts, inputs)
    return SetReport(plan.name, plan.kind, **counts)


def _run_combine(plan: Plan, options: Options) -> SetReport:
    label = f"{plan.name} (combine {','.join(plan.sources)})"
    srcs = [(s, plan.source / s) for s in plan.sources]
    inputs = {
        "kind": "combine",
        "sources": [
            (s, (read_record(p / DONE_FILE) or {}).get("fingerprint") or files_digest(p)) for s, p in srcs
        ],
        "rules_version": RULES_VERSION,
    }
    if options.utt2source:  # (absent otherwise: earlier fingerprints stay valid)
        inputs["options"] = options.relevant("combine")
    skipped = _already_done(plan, inputs, label)
    if skipped is not None:
        return skipped
    try:
        data = combine_data_dirs(srcs)
    except (CombineError, DataDirError) as e:
        raise SetError(f"{label}: {e}") from e
    n = len(data.utt2spk)
    counts = {"found": n, "kept": n, "rejected": {}, "repaired": {}, "utterances": n, "segments_dropped": 0}
    extra = None
    if options.utt2source:  # for weighted mixing: stage 2 cuts shards per source
        owner = {utt: s for s, p in srcs for utt in read_data_dir(p).utt2spk}
        extra = {"utt2source": "".join(f"{u} {owner[u]}\n" for u in sorted(data.utt2spk))}
        by_source = {s: sum(1 for o in owner.values() if o == s) for s, _ in srcs}
        counts["sources"] = by_source
        if sum(by_source.values()) != n:
            raise SetError(f"{label}: utt2source lists {sum(by_source.values())} utterances, the set {n}")
    _publish(plan, data, label, ",".join(plan.sources), counts, inputs, extra)
    logger.info(
        "%s: %d utterances%s%s",
        label,
        n,
        "" if data.text is not None else ", no text",
        f", by source {counts['sources']}" if "sources" in counts else "",
    )
    return SetReport(plan.name, plan.kind, **{k: counts[k] for k in _COUNT_KEYS})


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
    options: Optional[Options] = None,
) -> tuple[list[SetReport], list[str]]:
    """Prepare ``sets`` (then the ``combine`` spec) under ``datadir``.

    Returns:
        (reports of the sets done, error messages of the sets that failed).

    Raises:
        ConfigError: before any work, if an argument or a set is unusable.
    """
    options = options if options is not None else Options()
    datadir = Path(os.path.abspath(datadir))
    roots = {
        "librispeech": root_dir(librispeech_root),
        "librilight": root_dir(librilight_root),
        "commonvoice": root_dir(commonvoice_root),
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
