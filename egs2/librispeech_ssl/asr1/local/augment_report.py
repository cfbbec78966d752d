#!/usr/bin/env python3
"""Table of local/augment_effect.sh: WER/CER mean ± sd over seeds per arm and set, the
difference, and which arm wins on dev (the one the default should follow).

    python local/augment_report.py --expdir exp --base finetune_conformer_transformer_embedded \
        --aug finetune_conformer_transformer_embedded_aug --decode decode_asr_embedded \
        --sets "dev_clean test_clean test_other"
"""

import argparse
import json
import re
import statistics
import sys
from pathlib import Path


def _runs(expdir: Path, tag: str) -> dict:
    """seed -> exp dir: asr_<tag>_pretrained (the config's own seed, 0) and asr_<tag>_seed<N>_pretrained."""
    out = {}
    for d in expdir.glob(f"asr_{tag}*_pretrained"):
        m = re.fullmatch(rf"asr_{re.escape(tag)}(?:_seed(\d+))?_pretrained", d.name)
        if m:
            out[int(m.group(1) or 0)] = d
    return out


def _ms(xs):
    return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.2f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--expdir", type=Path, default=Path("exp"))
    p.add_argument("--base", required=True)
    p.add_argument("--aug", required=True)
    p.add_argument("--decode", required=True)
    p.add_argument("--sets", default="dev_clean test_clean test_other")
    p.add_argument("--seeds", default="", help="only these seeds (default: every run found)")
    a = p.parse_args()
    arms = {"without": _runs(a.expdir, a.base), "with augmentation": _runs(a.expdir, a.aug)}
    if a.seeds:
        keep = {int(s) for s in a.seeds.split()}
        arms = {arm: {s: d for s, d in runs.items() if s in keep} for arm, runs in arms.items()}
    lines = ["|set|arm|seeds|WER (mean ± sd)|CER (mean ± sd)|", "|---|---|---|---|---|"]
    wer = {}
    for dset in a.sets.split():
        for arm, runs in arms.items():
            missing = [
                d for d in runs.values() if not (d / a.decode / dset / "score" / "result.json").is_file()
            ]
            if missing:
                print(f"augment_report: {dset} is not scored with {a.decode} in " + ", ".join(map(str, missing))
                      + " (decode it, or leave that seed out with --seeds)", file=sys.stderr)  # fmt: skip
                return 1
            res = [
                json.loads((d / a.decode / dset / "score" / "result.json").read_text())
                for _, d in sorted(runs.items())
            ]
            if not res:
                print(f"augment_report: no scored runs for {arm} ({a.expdir})", file=sys.stderr)
                return 1
            wer[dset, arm] = statistics.mean(r["wer"] for r in res)
            lines.append(f"|{dset}|{arm}|{','.join(map(str, sorted(runs)))}|{_ms([r['wer'] for r in res])}|"
                         f"{_ms([r['cer'] for r in res])}|")  # fmt: skip
    print("\n".join(lines))
    for dset in a.sets.split():
        d = wer[dset, "with augmentation"] - wer[dset, "without"]
        print(
            f"- {dset}: augmentation changes WER by {d:+.2f} points ({100 * d / wer[dset, 'without']:+.1f}% relative)"
        )
    dev = a.sets.split()[0]
    winner = min(("without", "with augmentation"), key=lambda arm: wer[dev, arm])
    print(f"- on {dev} (the selection set): **{winner}** wins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
