"""Collect every scored model under an experiment folder into RESULTS.md and results.json.

    python -m espnet_ext.bin.results --expdir exp

Looks for ``<expdir>/<model>/decode_<config>/<test_set>/score/result.json`` (written by
``espnet_ext.bin.score``). ``results.json`` is a list with one entry per model and test set:
``model`` (the experiment folder's name), ``test_set``, ``wer`` and ``cer`` (percent),
``wer_ci_low`` and ``wer_ci_high`` (the 95% bootstrap confidence interval of the WER over
utterances, from the score folder's per-utterance errors: :mod:`espnet_ext.utils.bootstrap`),
``n_utts``, plus the error counts and ``decode`` (the decoding folder: a model decoded with
and without the LM has one entry per decoding), and ``train_seconds`` for a model whose
folder holds ``train_seconds.json`` (stage 11's equal-time comparison: its measured
training time). ``RESULTS.md`` has one table per model, as ESPnet recipes publish: config,
parameters, training data, initialization, and WER (with its confidence interval)/CER per
test set; when a model has several decodings of a test set (with and without the LM), a
paired-bootstrap section gives the probability that one is better than the other on the
same utterances. Sections that other stages add (the ablation, the comparison) are kept: they
live in ``<expdir>/RESULTS.*.md`` files and are appended.
"""

import argparse
import datetime
import json
import platform
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from espnet_ext.utils import bootstrap


def _params(model_dir: Path) -> str:
    log = model_dir / "train.log"
    if not log.exists():
        return "?"
    found = re.findall(r"Total Number of model parameters: ([^\n]+)", log.read_text(errors="replace"))
    return found[-1].strip() if found else "?"


def _train_config(model_dir: Path) -> dict:
    cfg = model_dir / "config.yaml"
    if not cfg.exists():
        return {}
    with open(cfg) as f:
        return yaml.safe_load(f) or {}


def collect(expdir: Path) -> List[Dict]:
    entries = []
    for result in sorted(expdir.glob("*/decode_*/*/score/result.json")):
        test_dir = result.parent.parent
        model_dir = test_dir.parent.parent
        r = json.loads(result.read_text())
        low = high = None  # a score folder without per-utterance errors: no interval
        try:
            table = bootstrap.read_utt_errors(result.parent)
        except FileNotFoundError:
            table = {}
        if table:
            low, high = bootstrap.wer_ci([e for e, _ in table.values()], [n for _, n in table.values()])
        entries.append(
            {
                "model": model_dir.name,
                "test_set": test_dir.name,
                "wer": round(r["wer"], 2),
                "wer_ci_low": None if low is None else round(low, 2),
                "wer_ci_high": None if high is None else round(high, 2),
                "cer": round(r["cer"], 2),
                "n_utts": r["n_utts"],
                "n_words": r["n_words"],
                "word_substitutions": r["word_substitutions"],
                "word_deletions": r["word_deletions"],
                "word_insertions": r["word_insertions"],
                "decode": test_dir.parent.name,
            }
        )
        seconds = model_dir / "train_seconds.json"  # stage 11's runs: measured training time
        if seconds.is_file():
            entries[-1]["train_seconds"] = round(json.loads(seconds.read_text())["total_s"], 1)
    return entries


def _ci(e: Dict) -> str:
    if e.get("wer_ci_low") is None:
        return "-"
    return f"[{e['wer_ci_low']:.2f}, {e['wer_ci_high']:.2f}]"


def _score_dir(expdir: Path, e: Dict) -> Path:
    return expdir / e["model"] / e["decode"] / e["test_set"] / "score"


def paired_section(expdir: Path, entries: List[Dict]) -> List[str]:
    """Paired bootstrap between the decodings of one model on one test set (with vs without
    the LM): empty when no model has two."""
    groups: Dict[tuple, List[Dict]] = {}
    for e in entries:
        groups.setdefault((e["model"], e["test_set"]), []).append(e)
    rows = []
    for (model, test_set), decs in sorted(groups.items()):
        # With-LM decodings first ("_lm_" in the folder's name, as ssl_asr.sh's decode_tag).
        decs = sorted(decs, key=lambda e: ("_lm_" not in e["decode"], e["decode"]))
        decs = [e for e in decs if e.get("wer_ci_low") is not None]  # has per-utterance errors
        for i, a in enumerate(decs):
            for b in decs[i + 1 :]:
                p, n = bootstrap.paired_from_tables(
                    bootstrap.read_utt_errors(_score_dir(expdir, a)),
                    bootstrap.read_utt_errors(_score_dir(expdir, b)),
                )
                rows.append(
                    f"|{model}|{test_set}|`{a['decode']}` ({a['wer']:.2f})"
                    f"|`{b['decode']}` ({b['wer']:.2f})|{p:.3f}|{n}|"
                )
    if not rows:
        return []
    return [
        "## Paired comparisons",
        f"Paired bootstrap over utterances ({bootstrap.N_RESAMPLES} resamples, seed "
        f"{bootstrap.SEED}): P(A better) is the fraction of resamples in which A's WER is lower "
        "than B's on the same utterances (ties count one half; above 0.95: A is better).",
        "",
        "|model|test set|A (WER)|B (WER)|P(A better)|utts|",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def render(expdir: Path, entries: List[Dict]) -> str:
    import espnet
    import torch

    lines = [
        "# RESULTS",
        "",
        "## Environment",
        f"- date: `{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}`",
        f"- python: `{platform.python_version()}`, espnet `{espnet.__version__}`, torch `{torch.__version__}`",
        "",
    ]
    by_model: Dict[tuple, List[Dict]] = {}  # one table per model and decoding (e.g. with/without LM)
    for e in entries:
        by_model.setdefault((e["model"], e["decode"]), []).append(e)
    for (model, decode), rows in by_model.items():
        cfg = _train_config(expdir / model)
        train_data = [
            t[0] if isinstance(t, (list, tuple)) else t.split(",")[0]
            for t in cfg.get("train_data_path_and_name_and_type", [])
        ]
        init = cfg.get("init_param") or ["none (from scratch)"]
        lines += [
            f"## {model}",
            f"- config: `{cfg.get('config', '?')}`",
            f"- parameters: {_params(expdir / model)}",
            f"- training data: {', '.join(f'`{t}`' for t in train_data) or '?'}",
            f"- initialization: {', '.join(f'`{i}`' for i in init)}",
            f"- decoding: `{decode}`",
            "",
            "|test set|utts|words|WER|WER 95% CI|CER|sub|del|ins|",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"|{r['test_set']}|{r['n_utts']}|{r['n_words']}|{r['wer']:.2f}"
                f"|{_ci(r)}|{r['cer']:.2f}"
                f"|{r['word_substitutions']}|{r['word_deletions']}|{r['word_insertions']}|"
            )
        lines.append("")
    lines += paired_section(expdir, entries)
    for extra in sorted(expdir.glob("RESULTS.*.md")):
        lines += [extra.read_text().rstrip(), ""]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--expdir", type=Path, required=True)
    args = p.parse_args(argv)
    if not args.expdir.is_dir():
        p.error(f"--expdir {args.expdir}: no such folder")
    entries = collect(args.expdir)
    (args.expdir / "results.json").write_text(json.dumps(entries, indent=1) + "\n")
    (args.expdir / "RESULTS.md").write_text(render(args.expdir, entries))
    print(f"{args.expdir}/RESULTS.md, {args.expdir}/results.json: {len(entries)} entries")


if __name__ == "__main__":
    sys.exit(main())
