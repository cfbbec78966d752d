"""Summarize the low-resource ablation: pre-trained vs from-scratch fine-tuning over seeds.

    python -m espnet_ext.bin.ablation_report --expdir exp --prefix asr_ablation_10min

Reads every ``<expdir>/<prefix>_{scratch,pretrained}_seed<N>/``: its scored decodings
(``*/<test_set>/score/result.json``) and the validation results ESPnet logged after each
epoch in ``train.log`` (CTC CER and attention accuracy on the dev set), and writes
``<expdir>/RESULTS.ablation.md``: per arm, the mean and sample standard deviation over seeds
of test WER/CER, the dev curve at each validation point, whether the pre-trained arm
beats the scratch arm by more than the seed spread, and the paired-bootstrap probability
(over test utterances, :mod:`espnet_ext.utils.bootstrap`) that the pre-trained arm is better:
for each seed (the two runs of that seed on the same utterances) and for the arms pooled
over seeds (each utterance's errors averaged over the seeds of each arm).
"""

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from espnet_ext.utils import bootstrap

_ARM = re.compile(r"_(scratch|pretrained)_seed(\d+)$")


def _valid_curve(log: Path) -> List[Dict[str, float]]:
    curve: Dict[int, Dict[str, float]] = {}  # by epoch: a resumed run may log an epoch again
    for epoch, line in re.findall(r"(\d+)epoch results: (.*)", log.read_text(errors="replace")):
        valid = line.split("[valid]", 1)[-1]
        point = {"epoch": int(epoch)}
        for key in ("cer_ctc", "acc", "cer", "wer"):
            m = re.search(rf"\b{key}=([0-9.eE+-]+)", valid)
            if m:
                point[key] = float(m.group(1))
        curve[int(epoch)] = point
    return [curve[e] for e in sorted(curve)]


def _mean_sd(xs: List[float]) -> str:
    if not xs:
        return "-"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.2f} ± {sd:.2f}"


def _paired(per_utt: Dict[str, Dict[str, Dict[int, dict]]]) -> List[str]:
    """Paired bootstrap, pretrained (A) vs scratch (B), per seed and pooled over seeds."""
    lines = []
    for test_set, arms in sorted(per_utt.items()):
        p_runs, s_runs = arms.get("pretrained", {}), arms.get("scratch", {})
        seeds = sorted(set(p_runs) & set(s_runs))
        if not seeds:
            continue
        per_seed = []
        for seed in seeds:
            p, _ = bootstrap.paired_from_tables(p_runs[seed], s_runs[seed])
            per_seed.append(f"seed {seed}: {p:.3f}")
        utts = sorted(p_runs[seeds[0]])
        words = [p_runs[seeds[0]][u][1] for u in utts]
        mean_errors = {
            arm: [statistics.mean(runs[s][u][0] for s in seeds) for u in utts]
            for arm, runs in (("pretrained", p_runs), ("scratch", s_runs))
        }
        pooled = bootstrap.paired_better(mean_errors["pretrained"], mean_errors["scratch"], words)
        lines.append(
            f"- {test_set}: paired bootstrap over {len(utts)} utterances ({bootstrap.N_RESAMPLES} "
            f"resamples): P(pretrained better than scratch) = **{pooled:.3f}** pooled over seeds "
            f"{seeds} ({'; '.join(per_seed)})"
        )
    return lines


def decode_mode(config: Path) -> str:
    """One line saying how a decoding config searches: CTC only, or joint CTC/attention."""
    cfg = yaml.safe_load(config.read_text()) or {}
    w = float(cfg.get("ctc_weight", 0.5))
    mode = (
        "CTC only (ctc_weight 1.0: the attention decoder is not used)"
        if w >= 1.0
        else f"joint CTC/attention (ctc_weight {w:g})"
    )
    return f"- decoding: `{config}`: {mode}, beam {cfg.get('beam_size', '?')}, no LM."


def report(expdir: Path, prefix: str, decode: str = "*", decode_config: Optional[Path] = None) -> str:
    runs: Dict[str, Dict[int, Path]] = {"scratch": {}, "pretrained": {}}
    for d in sorted(expdir.glob(f"{prefix}_*_seed*")):
        m = _ARM.search(d.name)
        if m and d.is_dir():
            runs[m.group(1)][int(m.group(2))] = d
    if not runs["scratch"] or not runs["pretrained"]:
        raise ValueError(f"{expdir}: need runs of both arms named {prefix}_{{scratch,pretrained}}_seed<N>")

    any_dir = next(iter(runs["pretrained"].values()))
    cfg = yaml.safe_load((any_dir / "config.yaml").read_text())
    steps_per_epoch = int(cfg.get("num_iters_per_epoch") or 0) // int(cfg.get("accum_grad", 1))

    scores: Dict[str, Dict[str, Dict[str, List[float]]]] = {}
    per_utt: Dict[str, Dict[str, Dict[int, dict]]] = {}  # test set -> arm -> seed -> utt table
    for arm, seeds in runs.items():
        for seed, d in seeds.items():
            for res in sorted(d.glob(f"{decode}/*/score/result.json")):
                r = json.loads(res.read_text())
                try:
                    per_utt.setdefault(res.parent.parent.name, {}).setdefault(arm, {})[seed] = (
                        bootstrap.read_utt_errors(res.parent)
                    )
                except FileNotFoundError:
                    pass
                s = scores.setdefault(res.parent.parent.name, {}).setdefault(arm, {"wer": [], "cer": []})
                s["wer"].append(r["wer"])
                s["cer"].append(r["cer"])

    lines = [
        f"## Ablation: {prefix} (low-resource fine-tuning, same steps and config, seeds "
        f"{sorted(runs['pretrained'])})",
        "",
        f"- config: `{cfg.get('config', '?')}`; training data: "
        f"`{cfg['train_data_path_and_name_and_type'][0][0]}`",
        "- pretrained: encoder initialized from the BEST-RQ checkpoint; scratch: random init.",
        *([decode_mode(decode_config)] if decode_config else []),
        "",
        "|test set|arm|WER (mean ± sd)|CER (mean ± sd)|seeds|",
        "|---|---|---|---|---|",
    ]
    verdicts = []
    for test_set, arms in sorted(scores.items()):
        for arm in ("scratch", "pretrained"):
            a = arms.get(arm, {"wer": [], "cer": []})
            lines.append(f"|{test_set}|{arm}|{_mean_sd(a['wer'])}|{_mean_sd(a['cer'])}|{len(a['wer'])}|")
        s, p = arms.get("scratch"), arms.get("pretrained")
        if s and p and len(s["wer"]) > 1 and len(p["wer"]) > 1:
            gain = statistics.mean(s["wer"]) - statistics.mean(p["wer"])
            spread = max(statistics.stdev(s["wer"]), statistics.stdev(p["wer"]))
            verdicts.append(
                f"- {test_set}: pre-training lowers WER by {gain:.2f} points; the larger seed "
                f"standard deviation is {spread:.2f}: "
                + ("**gain exceeds the seed spread**" if gain > spread else "gain within the seed spread")
            )
    lines += (
        [""]
        + verdicts
        + _paired(per_utt)
        + ["", "Dev-set curve (ESPnet's validation after each epoch; mean ± sd over seeds):", ""]
    )
    lines += [
        "|update|scratch CTC CER %|pretrained CTC CER %|scratch att. acc %|pretrained att. acc %|",
        "|---|---|---|---|---|",
    ]
    curves = {arm: [_valid_curve(d / "train.log") for d in seeds.values()] for arm, seeds in runs.items()}
    n_points = min(len(c) for cs in curves.values() for c in cs)
    for i in range(n_points):
        row = [str((i + 1) * steps_per_epoch) if steps_per_epoch else f"epoch {i + 1}"]
        for key in ("cer_ctc", "acc"):
            for arm in ("scratch", "pretrained"):
                row.append(_mean_sd([100 * c[i][key] for c in curves[arm] if key in c[i]]))
        lines.append("|" + "|".join(row) + "|")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--expdir", type=Path, required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument(
        "--decode",
        default="*",
        help="the decoding folder to report (default: every one; a run decoded twice counts twice)",
    )
    p.add_argument("--decode_config", type=Path, help="the decoding config, to say how it searched")
    args = p.parse_args(argv)
    try:
        text = report(args.expdir, args.prefix, args.decode, args.decode_config)
    except ValueError as e:
        sys.exit(f"ablation_report: ERROR: {e}")
    (args.expdir / "RESULTS.ablation.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
