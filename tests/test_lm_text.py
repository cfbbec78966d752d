"""espnet_ext.bin.lm_text: the LM training text of stage 3, on small fixtures in the real
formats (Kaldi text, LibriSpeech's gzipped one-sentence-per-line LM corpus)."""

import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))
import embedded_corpus as mec  # noqa: E402

from espnet_ext.bin import tokenizer  # noqa: E402


def _sentences(n: int, seed: str) -> list:
    rng = random.Random(seed)
    gen = mec.SentenceGenerator(rng)
    return [" ".join(gen.sentence()[1]) for _ in range(n)]


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    d = tmp_path_factory.mktemp("lm")
    train = _sentences(150, "train")
    (d / "train_text").write_text("".join(f"tr_{i:04d} {t}\n" for i, t in enumerate(train)))
    tokenizer.train(d / "train_text", d / "bpe", vocab_size=40)
    dev, test = _sentences(5, "dev"), _sentences(5, "test")
    (d / "dev_text").write_text("".join(f"dev_{i} {t}\n" for i, t in enumerate(dev)))
    (d / "test_text").write_text("".join(f"test_{i} {t}\n" for i, t in enumerate(test)))
    corpus = _sentences(300, "lm")
    lines = (
        corpus[:100]
        + ["", dev[2], "THE CAFÉ WAS OPEN", " ".join(["WORD"] * 200)]
        + [test[0]]
        + corpus[100:]
        + ["  SPACED   OUT   WORDS  "]
    )
    with gzip.open(d / "librispeech-lm-norm.txt.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    return d, corpus


def _run(d: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "espnet_ext.bin.lm_text",
        "--out_dir",
        str(out),
        "--bpemodel",
        str(d / "bpe" / "bpe.model"),
        "--text",
        str(d / "train_text"),
        "--plain",
        str(d / "librispeech-lm-norm.txt.gz"),
        "--exclude",
        str(d / "dev_text"),
        "--exclude",
        str(d / "test_text"),
        "--valid_text",
        str(d / "dev_text"),
        "--max_tokens",
        "300",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_every_line_kept_or_rejected_with_its_reason(fixture, tmp_path):
    d, corpus = fixture
    out = tmp_path / "lm"
    r = _run(d, out)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    plain = summary["sources"][str(d / "librispeech-lm-norm.txt.gz")]
    assert plain["read"] == 306 and plain["kept"] == 301  # 300 corpus lines + the spaced one
    assert plain["rejected_by_reason"] == {
        "empty": 1,
        "held_out_sentence": 2,
        "unknown_characters": 1,
        "too_long": 1,
    }
    assert summary["sources"][str(d / "train_text")] == {
        "read": 150,
        "kept": 150,
        "rejected": 0,
        "rejected_by_reason": {},
    }
    assert summary["kept"] == 451
    rejected = (out / "rejected.tsv").read_text().splitlines()
    assert len(rejected) == 5
    by_line = dict(line.split("\t") for line in rejected)
    src = str(d / "librispeech-lm-norm.txt.gz")
    assert by_line[f"{src}:101"] == "empty line"
    assert by_line[f"{src}:102"] == f"equals a transcript of {d / 'dev_text'}"
    assert "'É'" in by_line[f"{src}:103"]
    assert by_line[f"{src}:104"].endswith("tokens > --max_tokens 300")
    assert by_line[f"{src}:105"] == f"equals a transcript of {d / 'test_text'}"

    text = dict(line.split(" ", 1) for line in (out / "text").read_text().splitlines())
    assert len(text) == 451
    assert text["tr_0000"] and text["librispeech-lm-norm_000000001"] == corpus[0]
    assert text["librispeech-lm-norm_000000306"] == "SPACED OUT WORDS"  # whitespace normalized
    sp = spm.SentencePieceProcessor(model_file=str(d / "bpe" / "bpe.model"))
    shapes = dict(line.split() for line in (out / "text_shape.bpe").read_text().splitlines())
    assert shapes.keys() == text.keys()
    for uid in ("tr_0003", "librispeech-lm-norm_000000050"):
        assert int(shapes[uid]) == len(sp.encode(text[uid]))
    valid = (out / "valid_shape.bpe").read_text().splitlines()
    assert [v.split()[0] for v in valid] == [f"dev_{i}" for i in range(5)]


def test_rerun_changes_nothing(fixture, tmp_path):
    d, _ = fixture
    out = tmp_path / "lm"
    assert _run(d, out).returncode == 0
    before = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    r = _run(d, out)
    assert r.returncode == 0 and "already done" in r.stderr
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_bad_input_is_named(fixture, tmp_path):
    d, _ = fixture
    r = _run(d, tmp_path / "a", "--plain", str(tmp_path / "missing.txt.gz"))
    assert r.returncode == 2 and "missing.txt.gz: no such file" in r.stderr
    dup = tmp_path / "dup_text"
    dup.write_text((d / "train_text").read_text().splitlines()[0] + "\n")
    r = _run(d, tmp_path / "b", "--text", str(dup))
    assert r.returncode == 2 and "id 'tr_0000' occurs twice" in r.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_ext.bin.lm_text",
            "--out_dir",
            str(tmp_path / "c"),
            "--bpemodel",
            str(d / "bpe" / "bpe.model"),
            "--plain",
            str(empty),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "no LM training sentence kept" in r.stderr
