"""The whole recipe, smoke-tested on a small embedded corpus with ESPnet's real trainer,
inference and packing: every stage's outputs exist and are consistent, the results files
have the fields the acceptance checks read, and the packed model reloads in a fresh process
and transcribes a wav.

It trains for a few minutes only (PRETRAIN_ARGS/FINETUNE_ARGS below: 600 pre-training and 800
fine-tuning updates on about a quarter of the corpus, and a 200-update LM), enough for the CTC
branch to leave its plateau, so the test WER must be below 100%; README "Results" has the full
run's accuracy.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (the embedded corpus)"),
]

SCALE = os.environ.get("E2E_SCALE", "0.25")
PRETRAIN_ARGS = "--max_epoch 6 --num_iters_per_epoch 100 --scheduler_conf total_steps=600"
FINETUNE_ARGS = (
    "--max_epoch 8 --num_iters_per_epoch 100 --scheduler_conf total_steps=800 --keep_nbest_models 1"
)
LM_ARGS = "--num_iters_per_epoch 200 --scheduler_conf total_steps=200"


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    work = tmp_path_factory.mktemp("recipe")
    env = dict(os.environ, EMBEDDED=str(work / "corpus"))
    cmd = [
        "./run.sh",
        "--embedded_scale",
        SCALE,
        "--datadir",
        str(work / "data"),
        "--dumpdir",
        str(work / "dump"),
        "--expdir",
        str(work / "exp"),
        "--pretrain_args",
        PRETRAIN_ARGS,
        "--finetune_args",
        FINETUNE_ARGS,
        "--lm_args",
        LM_ARGS,
        "--inference_batch_size",
        "8",
    ]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    (work / "run.out").write_text(r.stdout + r.stderr)
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    return work, r.stdout + r.stderr


def test_data_and_features(recipe):
    work, _ = recipe
    for dset in ["unlabeled", "train_clean", "dev_clean", "test_clean", "test_other", "pretrain"]:
        d = work / "data" / dset
        for name in ["wav.scp", "utt2spk", "spk2utt", "utt2num_samples", "rejected"]:
            assert (d / name).is_file(), d / name
        n = len((d / "wav.scp").read_text().splitlines())
        assert n > 0 and n == len((d / "utt2spk").read_text().splitlines())
    from espnet_ext.shards.format import ShardManifest

    for dset in ["pretrain", "train_clean", "dev_clean", "test_clean", "test_other"]:
        # the default --feats_type raw: FLAC shards, wav.scp into them, speech_shape in samples
        d = work / "dump" / dset
        wavs = (d / "wav.scp").read_text().splitlines()
        shapes = dict(line.split() for line in (d / "speech_shape").read_text().splitlines())
        assert len(wavs) == len(shapes) > 0 and not (d / "feats.scp").exists()
        assert all(".ark:" in line for line in wavs) and all(n.isdigit() for n in shapes.values())
        m = ShardManifest.load(str(d))
        assert m.kind == "audio" and m.sample_rate == 16000 and m.n_utts == len(wavs)
        assert m.n_frames == sum(1 + int(n) // 160 for n in shapes.values())  # the frontend's frames
    tokens = (work / "data" / "token_list" / "bpe_unigram40" / "tokens.txt").read_text().split()
    assert tokens[0] == "<blank>" and tokens[-1] == "<sos/eos>"


def test_results_files(recipe):
    work, out = recipe
    results = json.loads((work / "exp" / "results.json").read_text())
    sets = {r["test_set"] for r in results}
    assert sets == {"test_clean", "test_other"}
    for r in results:
        assert set(r) >= {"model", "test_set", "wer", "cer", "n_utts"}
        assert "pretrained" in r["model"]
        # Scored for real: from jiwer's counts; a few minutes of training recognize something.
        assert 0.0 <= r["cer"] < r["wer"] < 100.0 and r["n_words"] > 0, r
        assert r["word_substitutions"] + r["word_deletions"] + r["word_insertions"] == round(
            r["wer"] * r["n_words"] / 100
        )
        n_ref = len((work / "dump" / r["test_set"] / "text").read_text().splitlines())
        assert r["n_utts"] == n_ref
    assert {r["decode"] for r in results} == {
        "decode_asr_embedded_lm_lm_train_lm_embedded_bpe40_valid.loss.best"
    }
    md = (work / "exp" / "RESULTS.md").read_text()
    assert "|test_clean|" in md and "|test_other|" in md
    assert "Successfully finished" in out


def test_pretraining_learned_and_encoder_transferred(recipe):
    work, _ = recipe
    ssl = next((work / "exp").glob("ssl_*"))
    log = (ssl / "train.log").read_text()
    valid = [line.split("[valid]", 1)[1] for line in log.splitlines() if "epoch results" in line]
    assert len(valid) == 6
    stat = {k: float(v) for k, v in re.findall(r"(bestrq_\w+)=([0-9.]+)", valid[-1])}
    # Masked-frame accuracy far above chance (uniform over the codes the targets use), and
    # the targets have not collapsed onto a few codes.
    assert stat["bestrq_acc"] > 5.0 / stat["bestrq_ppl"], stat
    # The loss is below what predicting the targets' code frequencies alone would give.
    assert stat["bestrq_loss"] < math.log(stat["bestrq_ppl"]) - 0.5, stat
    assert stat["bestrq_ppl"] > 50 and stat["bestrq_codes"] > 200, stat
    asr = next((work / "exp").glob("asr_*_pretrained"))
    cfg = (asr / "config.yaml").read_text()
    assert f"{ssl}/valid.loss.best.pth:encoder:encoder" in cfg


def test_language_model_stage(recipe):
    work, out = recipe
    lm_data = work / "data" / "lm_train_bpe40"
    summary = json.loads((lm_data / "summary.json").read_text())
    corpus_text = str(work / "corpus" / "librispeech-lm-norm.txt.gz")
    for src in summary["sources"].values():
        assert src["read"] == src["kept"] + src["rejected"]
    assert summary["sources"][corpus_text]["kept"] > 20000
    n_text = len((lm_data / "text").read_text().splitlines())
    assert n_text == summary["kept"] == len((lm_data / "text_shape.bpe").read_text().splitlines())
    held = {
        ln.split(" ", 1)[1]
        for d in ("dev_clean", "test_clean", "test_other")
        for ln in (work / "data" / d / "text").read_text().splitlines()
    }
    lm_sentences = {ln.split(" ", 1)[1] for ln in (lm_data / "text").read_text().splitlines()}
    assert not held & lm_sentences
    lm = work / "exp" / "lm_train_lm_embedded_bpe40"
    assert (lm / "valid.loss.best.pth").is_file()
    log = (lm / "train.log").read_text()
    losses = [float(x) for x in re.findall(r"\[valid\] loss=([0-9.]+)", log)]
    # Below a uniform guess over the 43 tokens (ln 43 = 3.76 nats): it learned the language.
    assert losses and losses[-1] < 2.5, losses
    assert "LM done" in out


def test_packed_model_transcribes_in_a_fresh_process(recipe, tmp_path):
    work, _ = recipe
    zips = list((work / "exp").glob("asr_*/packed_model.zip"))
    assert len(zips) == 1
    moved = tmp_path / "model.zip"
    shutil.copy(zips[0], moved)
    wav = sorted((work / "corpus" / "test-clean").glob("*/*/*.flac"))[0]
    code = f"""
import espnet_ext, soundfile
from espnet_model_zoo.downloader import ModelDownloader
from espnet2.bin.asr_inference import Speech2Text
files = ModelDownloader({str(tmp_path / "cache")!r}).download_and_unpack({str(moved)!r})
assert "lm_train_lm_embedded" in files.get("lm_file", ""), files  # the LM is packed too
s2t = Speech2Text(**files, beam_size=4, ctc_weight=0.3)
speech, rate = soundfile.read({str(wav)!r}, dtype="float32")
assert rate == 16000
text = s2t(speech)[0][0]
print("HYP:", text)
"""
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr[-4000:]
    hyp = [ln for ln in r.stdout.splitlines() if ln.startswith("HYP:")]
    assert hyp and len(hyp[0]) > len("HYP: ")


def test_rerun_of_finished_stages_changes_nothing(recipe):
    work, _ = recipe
    watched = [
        work / "data" / "train_clean" / "text",
        work / "dump" / "train_clean" / "wav.scp",
        work / "dump" / "train_clean" / "shards.tsv",
        work / "data" / "token_list" / "bpe_unigram40" / "tokens.txt",
        work / "data" / "lm_train_bpe40" / "text",
        work / "exp" / "lm_train_lm_embedded_bpe40" / "valid.loss.best.pth",
    ]
    before = [p.stat().st_mtime_ns for p in watched]
    env = dict(os.environ, EMBEDDED=str(work / "corpus"))
    r = subprocess.run(
        [
            "./run.sh",
            "--stage",
            "1",
            "--stop_stage",
            "3",
            "--embedded_scale",
            SCALE,
            "--datadir",
            str(work / "data"),
            "--dumpdir",
            str(work / "dump"),
            "--expdir",
            str(work / "exp"),
            "--lm_args",
            LM_ARGS,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert [p.stat().st_mtime_ns for p in watched] == before


def test_fbank_dump_has_the_features_the_frontend_makes_of_the_audio(recipe):
    """--feats_type fbank: stage 2 writes the features instead (feats.scp, feats_shape); they
    are what the logmel frontend computes from the default run's audio shards."""
    import kaldiio
    import numpy as np
    import torch
    import yaml

    from espnet_ext.frontend import LogMelFrontend

    work, _ = recipe
    env = dict(os.environ, EMBEDDED=str(work / "corpus"))
    fbank = work / "dump_fbank"
    r = subprocess.run(
        ["./run.sh", "--stage", "2", "--stop_stage", "2", "--embedded_scale", SCALE, "--feats_type", "fbank",
         "--datadir", str(work / "data"), "--dumpdir", str(fbank), "--expdir", str(work / "exp")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    d = fbank / "test_other"
    shapes = dict(line.split() for line in (d / "feats_shape").read_text().splitlines())
    raw = dict(
        line.split() for line in (work / "dump" / "test_other" / "speech_shape").read_text().splitlines()
    )
    assert shapes.keys() == raw.keys() and not (d / "wav.scp").exists()
    assert all(s == f"{1 + int(raw[u]) // 160},80" for u, s in shapes.items())
    conf = yaml.safe_load((ROOT / "conf" / "finetune_conformer_transformer_embedded.yaml").read_text())
    frontend = LogMelFrontend(**conf["frontend_conf"])
    feats = kaldiio.load_scp(str(d / "feats.scp"))
    audio = kaldiio.load_scp(str(work / "dump" / "test_other" / "wav.scp"))
    for utt in sorted(shapes)[:5]:
        rate, wave = audio[utt]
        assert rate == 16000
        x = torch.from_numpy(np.asarray(wave, dtype=np.float32))[None]
        y, n = frontend(x, torch.tensor([x.shape[1]]))
        np.testing.assert_allclose(y[0, : int(n[0])].numpy(), feats[utt], atol=1e-4)
