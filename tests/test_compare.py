"""The equal-time comparison (stage 11): training seconds from ESPnet's logs, the scratch
arm's schedule sized to a time budget, and the report."""

import datetime
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import humanfriendly
import pytest
import yaml

from espnet_ext.bin import compare

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "conf" / "tuning" / "finetune_stock_conformer_embedded_scratch.yaml"


def _espnet_line(epoch: int, train_s: float, valid_s: float) -> str:
    """An epoch line as ESPnet's Reporter writes it (times through humanfriendly, as it does)."""

    def span(s):
        return humanfriendly.format_timespan(datetime.timedelta(seconds=s))

    return (
        f"[host] 2026-12-02 04:30:00,000 (trainer:1) INFO: {epoch}epoch results: [train] "
        f"iter_time=0.01, forward_time=0.2, loss=1.0, time={span(train_s)}, total_count=100, "
        f"[valid] acc=0.5, time={span(valid_s)}, total_count=10\n"
    )


def test_epoch_seconds_reads_the_reporters_own_lines(tmp_path):
    from espnet2.train.reporter import Reporter

    reporter = Reporter()
    reporter.set_epoch(1)
    with reporter.observe("train") as sub:
        sub.register({"loss": 1.0})
        time.sleep(0.05)
        sub.next()
    with reporter.observe("valid") as sub:
        sub.register({"acc": 0.5})
        sub.next()
    log = tmp_path / "train.log"
    log.write_text(
        "INFO: " + reporter.log_message() + "\n" + _espnet_line(2, 3723.5, 83.45) + _espnet_line(3, 30.0, 2.0)
    )
    per = compare.epoch_seconds(log)
    assert set(per) == {1, 2, 3}
    assert 0.05 <= per[1] < 1.0
    assert per[2] == pytest.approx(3723.5 + 83.45) and per[3] == pytest.approx(32.0)
    # a resumed run logs epoch 3 again: the last entry counts, once
    log.write_text(log.read_text() + _espnet_line(3, 40.0, 2.0))
    assert compare.epoch_seconds(log)[3] == pytest.approx(42.0)
    assert compare.train_seconds(log) == pytest.approx(per[1] + 3723.5 + 83.45 + 42.0)


def test_epoch_seconds_errors_name_the_log(tmp_path):
    with pytest.raises(FileNotFoundError, match="no training log"):
        compare.epoch_seconds(tmp_path / "missing.log")
    (tmp_path / "empty.log").write_text("INFO: started\n")
    with pytest.raises(ValueError, match="empty.log: no epoch results"):
        compare.epoch_seconds(tmp_path / "empty.log")


def test_scratch_config_fills_the_budget_and_keeps_the_schedule_consistent(tmp_path):
    config = CONFIG
    calib = tmp_path / "calib.log"
    calib.write_text(_espnet_line(1, 40.0, 5.0) + _espnet_line(2, 24.0, 2.0))  # epoch 1 pays warm-up
    out = tmp_path / "scratch.yaml"
    plan = compare.scratch_config(config, out, calib_log=calib, budget_s=1150.0)
    assert plan["seconds_per_epoch"] == pytest.approx(26.0) and plan["epochs"] == 44
    cfg = yaml.safe_load(out.read_text())
    src = yaml.safe_load(config.read_text())
    assert cfg["max_epoch"] == 44
    assert cfg["scheduler_conf"]["total_steps"] == 44 * src["num_iters_per_epoch"] // src.get("accum_grad", 1)
    assert cfg["scheduler_conf"]["warmup_steps"] == src["scheduler_conf"]["warmup_steps"]
    assert cfg["encoder"] == "conformer" and cfg["optim_conf"] == src["optim_conf"]
    assert {k: v for k, v in cfg.items() if k not in ("max_epoch", "scheduler_conf")} == {
        k: v for k, v in src.items() if k not in ("max_epoch", "scheduler_conf")
    }
    assert out.read_text().splitlines()[0] == config.read_text().splitlines()[0]
    # a fixed epoch count (the calibration run itself): warm-up shortened to fit
    plan = compare.scratch_config(config, out, epochs=1)
    cfg = yaml.safe_load(out.read_text())
    assert cfg["max_epoch"] == 1 and cfg["scheduler_conf"]["total_steps"] == 100
    assert cfg["scheduler_conf"]["warmup_steps"] < cfg["scheduler_conf"]["total_steps"]
    with pytest.raises(ValueError, match="--epochs, or --calib_log and --budget_s"):
        compare.scratch_config(config, out)


def test_scratch_config_passes_the_recipes_config_check(tmp_path):
    out = tmp_path / "scratch.yaml"
    calib = tmp_path / "calib.log"
    calib.write_text(_espnet_line(1, 30.0, 3.0) + _espnet_line(2, 25.0, 2.0))
    compare.scratch_config(CONFIG, out, calib_log=calib, budget_s=600.0)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_ext.bin.check_config",
            "--pretrain_config",
            str(ROOT / "conf" / "pretrain_conformer_bestrq_embedded.yaml"),
            "--finetune_config",
            str(out),
            "--decode_config",
            str(ROOT / "conf" / "decode_asr_embedded.yaml"),
            "--init_from_pretrained",
            "false",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def _run(tmp_path: Path, arm: str, seed: int, wers: dict, total_s: float, errors=None):
    d = tmp_path / f"asr_compare_{arm}_seed{seed}"
    for test_set, wer in wers.items():
        s = d / "decode_asr_embedded" / test_set / "score"
        s.mkdir(parents=True)
        counts = dict(n_utts=30, n_words=300, word_substitutions=1, word_deletions=1, word_insertions=1)
        (s / "result.json").write_text(json.dumps({"wer": wer, "cer": wer / 3, **counts}))
        if errors is not None:
            (s / "utt_errors.txt").write_text("".join(f"u{i:03d} {e} 10\n" for i, e in enumerate(errors)))
    (d / "config.yaml").write_text(f"encoder: {'conformer' if arm == 'stock_scratch' else 'ssl_conformer'}\n")
    (d / "train_seconds.json").write_text(json.dumps({"total_s": total_s}))
    return d


def test_report_gives_both_arms_their_times_and_the_gain(tmp_path):
    scratch = [37.6, 38.5, 36.9]
    pretrained = [28.0, 29.0, 27.5]
    for seed, (s, p) in enumerate(zip(scratch, pretrained), 1):
        _run(tmp_path, "stock_scratch", seed, {"test_clean": s, "test_other": s + 1}, 1150.0 + seed, [2] * 30)
        _run(tmp_path, "pretrained", seed, {"test_clean": p, "test_other": p + 20}, 1148.0 + seed, [1] * 30)
    md = compare.report(tmp_path, "decode_asr_embedded")
    sd = statistics.stdev(scratch)
    assert f"|test_clean|stock_scratch|{statistics.mean(scratch):.2f} ± {sd:.2f}|" in md
    assert "|test_clean|pretrained|28.17 ± 0.76|" in md
    assert "training s 1150.00 ± 1.00" in md and "training s 1152.00 ± 1.00" in md
    rel = (statistics.mean(scratch) - statistics.mean(pretrained)) / statistics.mean(scratch)
    clean = next(ln for ln in md.splitlines() if ln.startswith("- test_clean: pre-training"))
    assert f"{-100 * rel:+.1f}% relative" in clean
    assert "**gain exceeds the seed spread**" in clean and "**meets the 20% relative goal**" in clean
    other = next(ln for ln in md.splitlines() if ln.startswith("- test_other: pre-training"))
    assert "no gain" in other and "below the 20% relative goal" in other
    assert "P(pretrained better than scratch)" in md  # the paired bootstrap over utterances
    # results.json: both arms by name, each with its measured training time
    from espnet_ext.bin.results import collect

    entries = collect(tmp_path)
    assert len(entries) == 12
    names = {e["model"]: e["train_seconds"] for e in entries}
    assert (
        names["asr_compare_stock_scratch_seed1"] == 1151.0 and names["asr_compare_pretrained_seed3"] == 1151.0
    )


def test_report_names_what_is_missing(tmp_path):
    _run(tmp_path, "pretrained", 1, {"test_clean": 30.0}, 100.0)
    with pytest.raises(ValueError, match="asr_compare_stock_scratch_seed<N>"):
        compare.report(tmp_path, "decode_asr_embedded")
    d = _run(tmp_path, "stock_scratch", 1, {"test_clean": 30.0}, 100.0)
    (d / "train_seconds.json").unlink()
    with pytest.raises(ValueError, match="no train_seconds.json"):
        compare.report(tmp_path, "decode_asr_embedded")


def test_stage_11_configs_are_checked_before_any_work(tmp_path):
    def run(*args):
        return subprocess.run(
            ["bash", "./run.sh", "--stage", "11", "--stop_stage", "11", "--expdir", str(tmp_path), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )

    r = run("--compare_config", "")
    assert r.returncode != 0 and "--compare_config is required" in r.stdout + r.stderr
    r = run("--compare_config", str(tmp_path / "none.yaml"))
    assert r.returncode != 0 and "config not found" in r.stdout + r.stderr
    assert not list(tmp_path.iterdir())  # nothing was started


def test_summarize_log_prints_whole_timespans(tmp_path):
    from espnet_ext.bin.summarize_log import summarize, timespan_seconds

    assert timespan_seconds("1 hour, 2 minutes and 3.5 seconds") == pytest.approx(3723.5)
    log = tmp_path / "train.log"
    log.write_text(_espnet_line(1, 257.69, 0.1))
    line = summarize(log)
    assert "[train] loss=1.0, time=257.7s, total_count=100" in line and "[valid] acc=0.5, time=0.1s" in line
