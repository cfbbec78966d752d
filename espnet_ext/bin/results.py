"""Collect every scored model under an experiment folder into RESULTS.md and results.json.

    python -m espnet_ext.bin.results --expdir exp

Looks for ``<expdir>/<model>/decode_<config>/<test_set>/score/result.json`` (written by
``espnet_ext.bin.score``). ``results.json`` is a list with one entry per model and test set:
``model`` (the experiment folder's name), ``test_set``, ``wer`` and ``cer`` (percent),
``n_utts``, plus the error counts and ``decode`` (the decoding folder: a model decoded with
and without the LM has one entry per decoding). ``RESULTS.md`` has one table per
model, as ESPnet recipes publish: config, parameters, training data, initialization, and
WER/CER per test set. Sections that other stages add (e.g. the ablation) are kept: they
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
        entries.append(
            {
                "model": model_dir.name,
                "test_set": test_dir.name,
                "wer": round(r["wer"], 2),
                "cer": round(r["cer"], 2),
                "n_utts": r["n_utts"],
                "n_words": r["n_words"],
                "word_substitutions": r["word_substitutions"],
                "word_deletions": r["word_deletions"],
                "word_insertions": r["word_insertions"],
                "decode": test_dir.parent.name,
            }
        )
    return entries


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
        train_data = [t[0] if isinstance(t, (list, tuple)) else t.split(",")[0]
                      for t in cfg.get("train_data_path_and_name_and_type", [])]
        init = cfg.get("init_param") or ["none (from scratch)"]
        lines += [
            f"## {model}",
            f"- config: `{cfg.get('config', '?')}`",
            f"- parameters: {_params(expdir / model)}",
            f"- training data: {', '.join(f'`{t}`' for t in train_data) or '?'}",
            f"- initialization: {', '.join(f'`{i}`' for i in init)}",
            f"- decoding: `{decode}`",
            "",
            "|test set|utts|words|WER|CER|sub|del|ins|",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"|{r['test_set']}|{r['n_utts']}|{r['n_words']}|{r['wer']:.2f}|{r['cer']:.2f}"
                f"|{r['word_substitutions']}|{r['word_deletions']}|{r['word_insertions']}|"
            )
        lines.append("")
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
