"""The equal-time comparison (stage 11): pre-trained + fine-tuned against ESPnet's stock
Conformer trained from scratch for the same training time.

    python -m espnet_ext.bin.compare seconds exp/ssl_x/train.log exp/asr_x/train.log
    python -m espnet_ext.bin.compare scratch_config --config conf/tuning/X.yaml \\
        --calib_log exp/asr_compare_calib/train.log --budget_s 1150 --out exp/X.yaml
    python -m espnet_ext.bin.compare report --expdir exp --decode decode_asr_embedded

Training time is what ESPnet's trainer measures and logs after every epoch: the ``time=``
of every section (``[train]``, ``[valid]``, ``[att_plot]``), summed over the epochs (model
building, data indexing and checkpoint writing are outside it, for both arms alike). The pre-trained arm's
time is its fine-tuning plus the one pre-training it starts from (stage 4, shared by its
seeds); the scratch arm's number of epochs is set from a short calibration run of its own
config so that its training time matches, and its learning-rate schedule is stretched over
those epochs (warm-up unchanged, cosine to the same floor). Both times are then measured and
reported, never assumed.

``report`` reads ``<expdir>/asr_compare_{pretrained,stock_scratch}_seed<N>/``: the scored
decodings ``<decode>/<test_set>/score/result.json`` and each run's ``train_seconds.json``
(written by ``seconds --out``), and writes ``<expdir>/RESULTS.compare.md``: per arm and test
set the mean ± sd over seeds of WER and CER, the training seconds, the relative WER gain of
pre-training, whether it exceeds the seed spread and the 20% goal, and the paired bootstrap
over utterances (:mod:`espnet_ext.bin.ablation_report`).
"""

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from espnet_ext.bin.ablation_report import _mean_sd, _paired
from espnet_ext.utils import bootstrap
from espnet_ext.utils.atomic import write_text_atomic

ARMS = ("stock_scratch", "pretrained")
_RUN = re.compile(r"^asr_compare_(stock_scratch|pretrained)_seed(\d+)$")
_SPAN = re.compile(r"(\d+(?:\.\d+)?) (week|day|hour|minute|second|millisecond)s?\b")
_UNIT = {"week": 604800.0, "day": 86400.0, "hour": 3600.0, "minute": 60.0, "second": 1.0, "millisecond": 1e-3}


def _timespan(text: str) -> float:
    """Seconds of a humanfriendly timespan: '1 minute and 23.45 seconds' -> 83.45."""
    return sum(float(n) * _UNIT[u] for n, u in _SPAN.findall(text))


def epoch_seconds(log: Path) -> Dict[int, float]:
    """Training seconds of each epoch of an ESPnet train.log: the time= of all its sections.

    A resumed run logs an epoch again; the last entry of an epoch counts.
    """
    if not log.is_file():
        raise FileNotFoundError(f"{log}: no training log")
    per_epoch: Dict[int, float] = {}
    for epoch, line in re.findall(r"(\d+)epoch results: (.*)", log.read_text(errors="replace")):
        spans = re.findall(r"\btime=([^=]+?)(?:, \w+=|$)", line)
        if spans:
            per_epoch[int(epoch)] = sum(_timespan(s) for s in spans)
    if not per_epoch:
        raise ValueError(f"{log}: no epoch results with a time (an unfinished or foreign log?)")
    return per_epoch


def train_seconds(log: Path) -> float:
    return sum(epoch_seconds(log).values())


def scratch_config(
    config: Path,
    out: Path,
    calib_log: Optional[Path] = None,
    budget_s: Optional[float] = None,
    epochs: Optional[int] = None,
) -> Dict:
    """Write ``config`` with max_epoch and its schedule set to ``epochs``, or to as many
    epochs as fill ``budget_s`` seconds at the pace of the calibration run ``calib_log``.

    The calibration run's epochs after its first (which pays one-off warm-up costs) give
    the seconds per epoch; with a single epoch, that one.
    """
    cfg = yaml.safe_load(config.read_text())
    per_epoch = None
    if epochs is None:
        if calib_log is None or budget_s is None:
            raise ValueError("scratch_config needs --epochs, or --calib_log and --budget_s")
        per = epoch_seconds(calib_log)
        timed = [s for _, s in sorted(per.items())][1:] or list(per.values())
        per_epoch = statistics.mean(timed)
        epochs = max(1, round(budget_s / per_epoch))
    iters = int(cfg.get("num_iters_per_epoch") or 0)
    if not iters:
        raise ValueError(f"{config}: needs num_iters_per_epoch (the epoch is the unit of the time budget)")
    steps = epochs * iters // int(cfg.get("accum_grad", 1))
    sched = dict(cfg.get("scheduler_conf") or {})
    if "total_steps" not in sched:
        raise ValueError(
            f"{config}: needs scheduler_conf.total_steps (warmupcosinelr) to stretch the schedule"
        )
    sched["total_steps"] = steps
    if "warmup_steps" in sched:
        sched["warmup_steps"] = min(int(sched["warmup_steps"]), steps // 2)
    cfg["max_epoch"], cfg["scheduler_conf"] = epochs, sched
    first = config.read_text().splitlines()[0]
    how = (
        f"at {per_epoch:.1f} s per epoch (calibration {calib_log}) to fill {budget_s:.0f} s"
        if per_epoch is not None
        else "as asked"
    )
    header = (
        f"{first}\n# Generated by espnet_ext.bin.compare scratch_config from {config}: "
        f"{epochs} epochs ({steps} updates) {how}.\n"
    )
    write_text_atomic(out, header + yaml.safe_dump(cfg, sort_keys=False))
    return {"epochs": epochs, "updates": steps, "seconds_per_epoch": per_epoch, "budget_s": budget_s}


def _load_arms(expdir: Path) -> Dict[str, Dict[int, Path]]:
    runs: Dict[str, Dict[int, Path]] = {arm: {} for arm in ARMS}
    for d in sorted(expdir.glob("asr_compare_*_seed*")):
        m = _RUN.match(d.name)
        if m and d.is_dir():
            runs[m.group(1)][int(m.group(2))] = d
    missing = [arm for arm in ARMS if not runs[arm]]
    if missing:
        raise ValueError(f"{expdir}: no runs named asr_compare_{missing[0]}_seed<N> (stage 11)")
    return runs


def report(expdir: Path, decode: str) -> str:
    runs = _load_arms(expdir)
    scores: Dict[str, Dict[str, Dict[str, List[float]]]] = {}
    per_utt: Dict[str, Dict[str, Dict[int, dict]]] = {}
    seconds: Dict[str, List[float]] = {arm: [] for arm in ARMS}
    for arm, seeds in runs.items():
        for seed, d in sorted(seeds.items()):
            t = d / "train_seconds.json"
            if not t.is_file():
                raise ValueError(f"{d}: no train_seconds.json (the run did not finish stage 11)")
            seconds[arm].append(json.loads(t.read_text())["total_s"])
            results = sorted(d.glob(f"{decode}/*/score/result.json"))
            if not results:
                raise ValueError(f"{d}: no scored decoding {decode}/<test_set>/score/result.json")
            for res in results:
                test_set = res.parent.parent.name
                r = json.loads(res.read_text())
                s = scores.setdefault(test_set, {}).setdefault(arm, {"wer": [], "cer": []})
                s["wer"].append(r["wer"])
                s["cer"].append(r["cer"])
                try:
                    table = bootstrap.read_utt_errors(res.parent)
                except FileNotFoundError:
                    continue
                # _paired names the arms "pretrained" and "scratch"
                key = "scratch" if arm == "stock_scratch" else arm
                per_utt.setdefault(test_set, {}).setdefault(key, {})[seed] = table

    any_cfg = {
        arm: yaml.safe_load((next(iter(runs[arm].values())) / "config.yaml").read_text()) for arm in ARMS
    }
    lines = [
        "## Equal-time comparison: pre-trained + fine-tuned vs ESPnet's stock Conformer from scratch",
        "",
        f"Decoded with `{decode}` (no LM); seeds {sorted(runs['pretrained'])} (pretrained: "
        f"fine-tuning seeds from the one stage-4 encoder) and {sorted(runs['stock_scratch'])} "
        "(stock_scratch). Training time: the seconds ESPnet's trainer logs per epoch "
        "(train + valid), pre-training included for the pretrained arm.",
        "",
        f"- pretrained: `{any_cfg['pretrained'].get('encoder')}` encoder from BEST-RQ, "
        f"{any_cfg['pretrained'].get('max_epoch')} epochs of fine-tuning; training s "
        f"{_mean_sd(seconds['pretrained'])}",
        f"- stock_scratch: `{any_cfg['stock_scratch'].get('encoder')}` encoder, random init, "
        f"{any_cfg['stock_scratch'].get('max_epoch')} epochs; training s {_mean_sd(seconds['stock_scratch'])}",
        "",
        "|test set|arm|WER (mean ± sd)|CER (mean ± sd)|seeds|",
        "|---|---|---|---|---|",
    ]
    verdicts = []
    for test_set, arms in sorted(scores.items()):
        for arm in ARMS:
            a = arms.get(arm, {"wer": [], "cer": []})
            lines.append(f"|{test_set}|{arm}|{_mean_sd(a['wer'])}|{_mean_sd(a['cer'])}|{len(a['wer'])}|")
        s, p = arms.get("stock_scratch"), arms.get("pretrained")
        if not (s and p):
            continue
        ms, mp = statistics.mean(s["wer"]), statistics.mean(p["wer"])
        rel = (ms - mp) / ms if ms else 0.0
        spread = max(
            statistics.stdev(s["wer"]) if len(s["wer"]) > 1 else 0.0,
            statistics.stdev(p["wer"]) if len(p["wer"]) > 1 else 0.0,
        )
        verdicts.append(
            f"- {test_set}: pre-training changes WER by {mp - ms:+.2f} points ({-100 * rel:+.1f}% "
            f"relative); larger seed sd {spread:.2f}: "
            + ("**gain exceeds the seed spread**" if ms - mp > spread else "gain within the seed spread")
            + ("; **meets the 20% relative goal**" if rel >= 0.2 else "; below the 20% relative goal")
        )
    lines += [""] + verdicts + _paired(per_utt)
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("seconds", help="training seconds of train.log files (summed)")
    s.add_argument("logs", type=Path, nargs="+")
    s.add_argument("--out", type=Path, help="write {total_s, per_log} JSON here")
    c = sub.add_parser("scratch_config", help="the scratch arm's config for a time budget")
    c.add_argument("--config", type=Path, required=True)
    c.add_argument("--calib_log", type=Path, help="a finished run of the config: its seconds per epoch")
    c.add_argument("--budget_s", type=float, help="training seconds to fill (with --calib_log)")
    c.add_argument("--epochs", type=int, help="a fixed number of epochs instead (the calibration run)")
    c.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("report", help="write <expdir>/RESULTS.compare.md")
    r.add_argument("--expdir", type=Path, required=True)
    r.add_argument("--decode", required=True, help="the decoding folder's name (no LM)")
    args = p.parse_args(argv)
    try:
        if args.cmd == "seconds":
            per_log = {str(log): train_seconds(log) for log in args.logs}
            total = sum(per_log.values())
            if args.out:
                write_text_atomic(
                    args.out, json.dumps({"total_s": total, "per_log": per_log}, indent=1) + "\n"
                )
            print(f"{total:.1f}")
        elif args.cmd == "scratch_config":
            plan = scratch_config(args.config, args.out, args.calib_log, args.budget_s, args.epochs)
            pace = (
                f", {plan['seconds_per_epoch']:.1f} s/epoch -> ~{plan['epochs'] * plan['seconds_per_epoch']:.0f} s "
                f"for a budget of {plan['budget_s']:.0f} s"
                if plan["seconds_per_epoch"]
                else ""
            )
            print(f"{args.out}: {plan['epochs']} epochs, {plan['updates']} updates{pace}")
        else:
            text = report(args.expdir, args.decode)
            write_text_atomic(args.expdir / "RESULTS.compare.md", text)
            print(text)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"compare: ERROR: {e}")


if __name__ == "__main__":
    main()
