"""Scoring against hand-computed WER/CER, the tokenizer round trip, and job splitting."""

import json
from pathlib import Path

import pytest

from espnet_ext.bin.score import normalize, score
from espnet_ext.bin.split_scp import split_keys
from espnet_ext.bin.tokenizer import train as train_tokenizer


def _write(path: Path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_normalization_rules():
    assert normalize("hello, World!") == "HELLO WORLD"
    assert normalize("\u2581it's \u2581a \u2581test") == "IT'S A TEST"
    assert normalize("'quoted' words -- here") == "QUOTED WORDS HERE"
    assert normalize("under_score") == "UNDER SCORE"


def test_wer_matches_hand_computation(tmp_path):
    ref = _write(tmp_path / "ref", ["a THE CAT SAT ON THE MAT", "b HELLO WORLD", "c ONE TWO THREE"])
    hyp = _write(tmp_path / "hyp", ["a the cat sat on mat", "b hello there world", "c ONE TOO THREE"])
    r = score(ref, hyp, tmp_path / "out")
    # a: one deletion (THE); b: one insertion (THERE); c: one substitution (TWO->TOO).
    assert (r["word_substitutions"], r["word_deletions"], r["word_insertions"]) == (1, 1, 1)
    assert r["n_words"] == 6 + 2 + 3
    assert r["wer"] == pytest.approx(100 * 3 / 11)
    # Characters: a loses "THE " (4), b gains "THERE " (6), c: TWO->TOO is one substitution.
    n_chars = len("THE CAT SAT ON THE MAT") + len("HELLO WORLD") + len("ONE TWO THREE")
    assert r["n_chars"] == n_chars
    assert r["cer"] == pytest.approx(100 * (4 + 6 + 1) / n_chars)
    assert json.loads((tmp_path / "out" / "result.json").read_text())["n_utts"] == 3
    ali = (tmp_path / "out" / "alignment.txt").read_text()
    assert "a S=0 D=1 I=0 N=6" in ali and "b S=0 D=0 I=1 N=2" in ali and "c S=1 D=0 I=0 N=3" in ali


def test_missing_hypothesis_counts_as_deletions(tmp_path):
    ref = _write(tmp_path / "ref", ["a ONE TWO", "b THREE"])
    hyp = _write(tmp_path / "hyp", ["a ONE TWO"])
    r = score(ref, hyp, tmp_path / "out")
    assert r["missing"] == ["b"] and r["word_deletions"] == 1 and r["wer"] == pytest.approx(100 / 3)


def test_unknown_hypothesis_and_empty_reference_are_errors(tmp_path):
    ref = _write(tmp_path / "ref", ["a ONE"])
    with pytest.raises(ValueError, match="no reference"):
        score(ref, _write(tmp_path / "hyp", ["a ONE", "zz TWO"]), tmp_path / "o")
    with pytest.raises(ValueError, match="empty reference"):
        score(_write(tmp_path / "ref2", ["a"]), ref, tmp_path / "o")


def test_split_keys_even_and_contiguous(tmp_path):
    scp = _write(tmp_path / "feats.scp", [f"u{i:02d} x.ark:{i}" for i in range(10)])
    split_keys(scp, 3, tmp_path / "split" / "keys")
    parts = [(tmp_path / "split" / f"keys.{i}").read_text().split() for i in (1, 2, 3)]
    assert [len(p) for p in parts] == [4, 3, 3]
    assert sum(parts, []) == [f"u{i:02d}" for i in range(10)]
    with pytest.raises(ValueError, match="cannot split 10 keys into 11"):
        split_keys(scp, 11, tmp_path / "k")


def test_tokenizer_round_trip_and_token_list(tmp_path):
    import sentencepiece as spm

    words = "THE QUICK BROWN FOX JUMPS OVER A LAZY DOG WHILE SEVEN RED BIRDS SING IT'S LATE".split()
    lines = [f"utt{i:03d} " + " ".join(words[(i + k) % len(words)] for k in range(6)) for i in range(200)]
    text = _write(tmp_path / "text", lines)
    tokens = train_tokenizer(text, tmp_path / "bpe", vocab_size=40)
    toks = tokens.read_text().split("\n")[:-1]
    assert toks[0] == "<blank>" and toks[1] == "<unk>" and toks[-1] == "<sos/eos>"
    assert len(toks) == len(set(toks))
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "bpe" / "bpe.model"))
    assert sp.get_piece_size() == 40
    for line in lines[:20]:
        sentence = line.split(maxsplit=1)[1]
        pieces = sp.encode(sentence, out_type=str)
        assert all(p in toks for p in pieces)
        assert sp.decode(pieces) == sentence
    mtime = tokens.stat().st_mtime_ns
    train_tokenizer(text, tmp_path / "bpe", vocab_size=40)
    assert tokens.stat().st_mtime_ns == mtime, "a re-run with the same input must change nothing"


def test_results_one_entry_and_table_per_model_decoding_and_set(tmp_path):
    """results.json: one entry per (model, decoding, test set); RESULTS.md: one table per
    model and decoding, so decodes with and without the LM are never mixed in one table."""
    from espnet_ext.bin.results import collect, render

    model = tmp_path / "asr_x_pretrained"
    for decode, wer in (("decode_asr", 30.0), ("decode_asr_lm_lm_x_valid.loss.best", 7.5)):
        for test_set in ("test_clean", "test_other"):
            d = model / decode / test_set / "score"
            d.mkdir(parents=True)
            (d / "result.json").write_text(
                json.dumps(
                    {
                        "wer": wer,
                        "cer": wer / 3,
                        "n_utts": 10,
                        "n_words": 40,
                        "word_substitutions": 3,
                        "word_deletions": 0,
                        "word_insertions": 0,
                    }
                )
            )
    (model / "config.yaml").write_text("config: conf/x.yaml\ninit_param: [ssl.pth:encoder:encoder]\n")
    entries = collect(tmp_path)
    assert sorted((e["decode"], e["test_set"], e["wer"]) for e in entries) == [
        ("decode_asr", "test_clean", 30.0),
        ("decode_asr", "test_other", 30.0),
        ("decode_asr_lm_lm_x_valid.loss.best", "test_clean", 7.5),
        ("decode_asr_lm_lm_x_valid.loss.best", "test_other", 7.5),
    ]
    assert all(e["model"] == "asr_x_pretrained" and e["n_utts"] == 10 for e in entries)
    md = render(tmp_path, entries)
    tables = md.split("## asr_x_pretrained")[1:]
    assert len(tables) == 2
    assert "`decode_asr`" in tables[0] and "|30.00|" in tables[0] and "|7.50|" not in tables[0]
    assert "_lm_" in tables[1] and "|7.50|" in tables[1] and "|30.00|" not in tables[1]


def test_ablation_report_mean_spread_verdict_and_decode_filter(tmp_path):
    """Stage 9's report: mean ± sd per arm over seeds, the verdict against the seed spread,
    the dev curve from train.log, and only the decoding folder asked for."""
    import statistics

    from espnet_ext.bin.ablation_report import report

    wers = {"scratch": [100.0, 104.0, 108.0], "pretrained": [88.0, 89.0, 90.0]}
    for arm, values in wers.items():
        for seed, wer in enumerate(values, 1):
            d = tmp_path / f"asr_abl_{arm}_seed{seed}"
            for decode, w in (("decode_ablation", wer), ("decode_other", 1.0)):
                s = d / decode / "test_clean" / "score"
                s.mkdir(parents=True)
                (s / "result.json").write_text(json.dumps({"wer": w, "cer": w / 2}))
            (d / "config.yaml").write_text(
                "config: conf/lowres.yaml\nnum_iters_per_epoch: 100\naccum_grad: 1\n"
                "train_data_path_and_name_and_type: [[dump/low/feats.scp, speech, kaldi_ark]]\n"
            )
            (d / "train.log").write_text(
                "".join(
                    f"x {e}epoch results: [train] loss=1 [valid] cer_ctc={0.9 - 0.1 * e:.2f}, acc=0.{e}\n"
                    for e in (1, 2)
                )
            )
    md = report(tmp_path, "asr_abl", "decode_ablation")
    assert "- decoding:" not in md  # said only when the config is given
    ctc_only = tmp_path / "ctc_only.yaml"
    ctc_only.write_text("beam_size: 10\nctc_weight: 1.0\n")
    assert "CTC only (ctc_weight 1.0: the attention decoder is not used), beam 10, no LM." in report(
        tmp_path, "asr_abl", "decode_ablation", ctc_only
    )
    sd_s = statistics.stdev(wers["scratch"])
    assert f"|test_clean|scratch|104.00 ± {sd_s:.2f}|52.00 ± {sd_s / 2:.2f}|3|" in md
    assert "|test_clean|pretrained|89.00 ± 1.00|44.50 ± 0.50|3|" in md
    assert "lowers WER by 15.00 points" in md and "**gain exceeds the seed spread**" in md
    assert "|100|80.00 ± 0.00|80.00 ± 0.00|10.00 ± 0.00|10.00 ± 0.00|" in md  # dev curve, update 100
    assert "|200|70.00 ± 0.00|" in md
    # Without the filter, the second decoding folder would be averaged in.
    assert "|test_clean|pretrained|89.00" not in report(tmp_path, "asr_abl")


# ---- Error bars: bootstrap confidence intervals and paired comparisons ----


def _utt_errors(d: Path, errors, words):
    d.mkdir(parents=True, exist_ok=True)
    _write(d / "utt_errors.txt", [f"u{i:03d} {e} {n}" for i, (e, n) in enumerate(zip(errors, words))])


def test_bootstrap_ci_contains_the_estimate_and_is_deterministic():
    import numpy as np

    from espnet_ext.utils.bootstrap import wer_ci

    rng = np.random.default_rng(1)
    words = rng.integers(5, 30, size=200)
    errors = rng.binomial(words, 0.2)
    wer = 100 * errors.sum() / words.sum()
    low, high = wer_ci(errors, words)
    assert low < wer < high and high - low < 10
    assert (low, high) == wer_ci(errors, words)  # fixed seed
    assert wer_ci(errors, words, seed=7) != (low, high)
    # More utterances with the same error rate: a narrower interval.
    low4, high4 = wer_ci(np.tile(errors, 4), np.tile(words, 4))
    assert high4 - low4 < (high - low) * 0.7
    assert wer_ci([0, 0], [3, 4]) == (0.0, 0.0)


def test_paired_bootstrap_identical_and_clearly_better_systems():
    import numpy as np

    from espnet_ext.utils.bootstrap import paired_better

    rng = np.random.default_rng(2)
    words = rng.integers(5, 30, size=300)
    a = rng.binomial(words, 0.3)
    assert paired_better(a, a, words) == 0.5  # identical: every resample is a tie
    better = np.maximum(a - rng.integers(1, 3, size=300), 0)
    assert paired_better(better, a, words) > 0.99
    assert paired_better(a, better, words) < 0.01
    with pytest.raises(ValueError):
        paired_better(a[:10], a, words)


def test_score_writes_per_utterance_errors_and_ci(tmp_path):
    from espnet_ext.utils.bootstrap import read_utt_errors

    ref = _write(tmp_path / "ref", ["a THE CAT SAT ON THE MAT", "b HELLO WORLD", "c ONE TWO THREE"])
    hyp = _write(tmp_path / "hyp", ["a the cat sat on mat", "b hello there world"])
    r = score(ref, hyp, tmp_path / "out")
    table = read_utt_errors(tmp_path / "out")
    assert table == {"a": (1, 6), "b": (1, 2), "c": (3, 3)}
    assert r["wer_ci_low"] <= r["wer"] <= r["wer_ci_high"]
    # A score folder written before utt_errors.txt existed: the alignment's headers give the same.
    (tmp_path / "out" / "utt_errors.txt").unlink()
    assert read_utt_errors(tmp_path / "out") == table


def test_results_ci_and_paired_lm_comparison(tmp_path):
    import numpy as np

    from espnet_ext.bin.results import collect, render

    rng = np.random.default_rng(3)
    words = rng.integers(5, 20, size=100)
    no_lm = rng.binomial(words, 0.3)
    with_lm = np.maximum(no_lm - 2, 0)
    model = tmp_path / "asr_x_pretrained"
    for decode, errs in (("decode_asr", no_lm), ("decode_asr_lm_lm_x_valid.loss.best", with_lm)):
        d = model / decode / "test_clean" / "score"
        _utt_errors(d, errs, words)
        wer = 100 * errs.sum() / words.sum()
        (d / "result.json").write_text(
            json.dumps(
                {
                    "wer": wer,
                    "cer": wer / 3,
                    "n_utts": 100,
                    "n_words": int(words.sum()),
                    "word_substitutions": int(errs.sum()),
                    "word_deletions": 0,
                    "word_insertions": 0,
                }
            )
        )
    (model / "config.yaml").write_text("config: conf/x.yaml\n")
    entries = collect(tmp_path)
    for e in entries:
        assert e["wer_ci_low"] < e["wer"] < e["wer_ci_high"]
    md = render(tmp_path, entries)
    assert "|WER 95% CI|" in md
    e = entries[0]
    assert f"|{e['wer']:.2f}|[{e['wer_ci_low']:.2f}, {e['wer_ci_high']:.2f}]|" in md
    paired = md.split("## Paired comparisons")[1]
    row = [line for line in paired.splitlines() if line.startswith("|asr_x_pretrained|test_clean|")]
    assert len(row) == 1 and row[0].index("_lm_") < row[0].index("`decode_asr` (")  # A: with LM
    assert float(row[0].split("|")[5]) > 0.99


def test_ablation_report_paired_probability(tmp_path):
    import numpy as np

    from espnet_ext.bin.ablation_report import report

    rng = np.random.default_rng(4)
    words = rng.integers(5, 20, size=80)
    for arm, rate in (("scratch", 0.6), ("pretrained", 0.3)):
        for seed in (1, 2):
            d = tmp_path / f"asr_abl_{arm}_seed{seed}"
            s = d / "decode_ablation" / "test_clean" / "score"
            errs = rng.binomial(words, rate)
            _utt_errors(s, errs, words)
            (s / "result.json").write_text(json.dumps({"wer": 100 * errs.sum() / words.sum(), "cer": 1.0}))
            (d / "config.yaml").write_text(
                "config: c.yaml\nnum_iters_per_epoch: 10\n"
                "train_data_path_and_name_and_type: [[dump/low/feats.scp, speech, kaldi_ark]]\n"
            )
            (d / "train.log").write_text("x 1epoch results: [train] loss=1 [valid] cer_ctc=0.5, acc=0.5\n")
    md = report(tmp_path, "asr_abl", "decode_ablation")
    assert "- decoding:" not in md  # said only when the config is given
    ctc_only = tmp_path / "ctc_only.yaml"
    ctc_only.write_text("beam_size: 10\nctc_weight: 1.0\n")
    assert "CTC only (ctc_weight 1.0: the attention decoder is not used), beam 10, no LM." in report(
        tmp_path, "asr_abl", "decode_ablation", ctc_only
    )
    line = next(x for x in md.splitlines() if "P(pretrained better than scratch)" in x)
    assert "**1.000** pooled over seeds [1, 2]" in line and "seed 1: 1.000" in line and "seed 2:" in line
