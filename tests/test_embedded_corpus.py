"""Tests of local/make_embedded_corpus.py and its package local/embedded_corpus/: real espeak-ng
synthesis at a tiny --scale, checked in LibriSpeech layout, plus the full-size sentence plan
(no audio)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "local" / "make_embedded_corpus.py"
sys.path.insert(0, str(SCRIPT.parent))
import embedded_corpus as ec  # noqa: E402

SCALE = "0.02"
SEED = "7"
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")

UTT_RE = re.compile(r"^(\d+)-(\d+)-(\d{4})$")
LINE_RE = re.compile(r"^(\d+-\d+-\d{4}) ([A-Z']+(?: [A-Z']+)*)$")


def _make(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), *extra], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("embedded") / "a"
    proc = _make(out, "--seed", SEED, "--scale", SCALE, "--nj", "2")
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def corpus_again(tmp_path_factory) -> Path:
    """Same seed and scale, another directory, one process instead of two."""
    out = tmp_path_factory.mktemp("embedded") / "b"
    proc = _make(out, "--seed", SEED, "--scale", SCALE, "--nj", "1")
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def full_plan() -> ec.CorpusPlan:
    return ec.build_plan(seed=1, scale=1.0)


def _speakers_txt(root: Path) -> dict[int, dict]:
    out = {}
    for line in (root / "SPEAKERS.TXT").read_text().splitlines():
        if line.startswith(";"):
            continue
        fields = [f.strip() for f in line.split("|")]
        assert len(fields) == 5, line
        spk, sex, subset, minutes, name = fields
        m = re.fullmatch(r"espeak-ng (\S+)\+(\S+) s(\d+) p(\d+) g(\d+)", name)
        assert m, name
        out[int(spk)] = {
            "sex": sex,
            "subset": subset,
            "minutes": float(minutes),
            "combo": f"{m[1]}+{m[2]}",
            "rate": int(m[3]),
            "pitch": int(m[4]),
        }
    return out


def _transcripts(root: Path) -> dict[str, dict[str, str]]:
    """subset -> utterance id -> transcript, read from the trans.txt files."""
    out: dict[str, dict[str, str]] = {s: {} for s in ec.SUBSETS}
    for subset in ec.SUBSETS:
        for path in sorted((root / subset).glob("*/*/*.trans.txt")):
            for line in path.read_text().splitlines():
                uid, text = line.split(" ", 1)
                out[subset][uid] = text
    return out


# ------------------------------------------------------------------ layout and formats
def test_layout_and_audio_format(corpus: Path) -> None:
    top = {p.name for p in corpus.iterdir() if not p.name.startswith(".")}
    assert top == set(ec.SUBSETS) | {"SPEAKERS.TXT", ec.MANIFEST, ec.LM_TEXT}
    n_flac = 0
    for subset in ec.SUBSETS:
        for path in (corpus / subset).rglob("*"):
            rel = path.relative_to(corpus / subset).parts
            if path.is_dir():
                assert len(rel) <= 2 and all(p.isdigit() for p in rel), path
                continue
            assert len(rel) == 3, path
            spk, chap, name = rel
            if name.endswith(".flac"):
                m = UTT_RE.match(name[:-5])
                assert m and (m[1], m[2]) == (spk, chap), path
                info = sf.info(str(path))
                assert (info.samplerate, info.channels) == (16000, 1), path
                assert (info.format, info.subtype) == ("FLAC", "PCM_16"), path
                assert 1.0 < info.duration < 10.0, path
                n_flac += 1
            else:
                assert name == f"{spk}-{chap}.trans.txt", path
    assert n_flac > 20


def test_trans_txt_ids_match_files(corpus: Path) -> None:
    for subset in ec.SUBSETS:
        chapters = [p for p in (corpus / subset).glob("*/*") if p.is_dir()]
        assert chapters, subset
        for chap in chapters:
            trans = list(chap.glob("*.trans.txt"))
            assert [t.name for t in trans] == [f"{chap.parent.name}-{chap.name}.trans.txt"]
            lines = trans[0].read_text().splitlines()
            assert lines == sorted(lines)
            ids = []
            for line in lines:
                m = LINE_RE.match(line)
                assert m, f"{trans[0]}: {line!r}"
                ids.append(m[1])
            flacs = sorted(p.stem for p in chap.glob("*.flac"))
            assert ids == flacs
            assert ids[0].endswith("-0000")  # numbered from 0 like LibriSpeech


def test_speakers_txt_covers_all_speakers(corpus: Path) -> None:
    speakers = _speakers_txt(corpus)
    on_disk = {int(p.name): s for s in ec.SUBSETS for p in (corpus / s).iterdir()}
    assert speakers.keys() == on_disk.keys()
    for spk, row in speakers.items():
        assert row["subset"] == on_disk[spk]
        assert row["sex"] in ("M", "F")
        chapters = list((corpus / row["subset"] / str(spk)).iterdir())
        assert 1 <= len(chapters) <= 3
        seconds = sum(sf.info(str(f)).duration for c in chapters for f in c.glob("*.flac"))
        assert row["minutes"] == pytest.approx(seconds / 60, abs=0.006)
    assert list(speakers) == sorted(speakers)  # sorted by id, like LibriSpeech
    manifest = json.loads((corpus / ec.MANIFEST).read_text())
    assert manifest["params"]["seed"] == int(SEED)
    assert {s["id"] for s in manifest["speakers"]} == set(speakers)


# ------------------------------------------------------------------ honesty rules
def _check_rules(transcripts: dict[str, dict[str, str]], speakers: dict[int, dict]) -> None:
    train_text = set(transcripts["unlabeled"].values()) | set(transcripts["train-clean"].values())
    for subset in ec.TEST_SUBSETS:
        assert transcripts[subset], subset
        assert not set(transcripts[subset].values()) & train_text, subset
    train = [s for s in speakers.values() if s["subset"] in ec.TRAIN_SUBSETS]
    train_combos = {s["combo"] for s in train}
    dev_combos = {s["combo"] for s in speakers.values() if s["subset"] == "dev-clean"}
    for s in speakers.values():
        if s["subset"] == "test-other":
            assert s["combo"] not in train_combos | dev_combos, s
        if s["subset"] in ("test-clean", "dev-clean"):
            assert s["combo"] in train_combos, s
            same = [t for t in train if t["combo"] == s["combo"]]
            assert all((t["rate"], t["pitch"]) != (s["rate"], s["pitch"]) for t in same)


def test_rules_hold_on_disk(corpus: Path) -> None:
    _check_rules(_transcripts(corpus), _speakers_txt(corpus))


def test_rules_hold_at_full_size(full_plan: ec.CorpusPlan) -> None:
    transcripts = {s: {} for s in ec.SUBSETS}
    for u in full_plan.utterances:
        transcripts[u.subset][u.uid] = u.transcript
    speakers = {
        s.id: {"subset": s.subset, "combo": s.combo, "rate": s.rate, "pitch": s.pitch}
        for s in full_plan.speakers
    }
    _check_rules(transcripts, speakers)
    # no sentence twice anywhere, unique ids, test-other variants never used elsewhere
    all_text = [u.transcript for u in full_plan.utterances]
    assert len(set(all_text)) == len(all_text)
    assert len({u.uid for u in full_plan.utterances}) == len(full_plan.utterances)
    other_variants = {s.variant for s in full_plan.speakers if s.subset == "test-other"}
    assert other_variants
    assert not other_variants & {s.variant for s in full_plan.speakers if s.subset != "test-other"}


def test_check_voice_rules_rejects_violations(full_plan: ec.CorpusPlan) -> None:
    train = next(s for s in full_plan.speakers if s.subset == "train-clean")
    bad_other = [
        train,
        ec.Speaker(
            id=1,
            subset="test-other",
            voice=train.voice,
            variant=train.variant,
            sex=train.sex,
            rate=150,
            pitch=40,
            word_gap=0,
            chapters=(5,),
        ),
    ]
    with pytest.raises(RuntimeError, match="test-other"):
        ec.check_voice_rules(bad_other)
    clone = ec.Speaker(
        id=2,
        subset="test-clean",
        voice=train.voice,
        variant=train.variant,
        sex=train.sex,
        rate=train.rate,
        pitch=train.pitch,
        word_gap=0,
        chapters=(6,),
    )
    with pytest.raises(RuntimeError, match="duplicates"):
        ec.check_voice_rules([train, clone])


# ------------------------------------------------------------------ full-size text plan
def test_full_size_vocabulary(full_plan: ec.CorpusPlan) -> None:
    stats = ec.vocabulary_stats(full_plan.sentences())
    assert stats["distinct_words"] >= 1000
    oov = stats["oov_vs_train_clean"]["all-test"]["token_rate"]
    assert 0.0 < oov < 0.08  # train-clean covers most test words, but not all


def test_full_size_plan_sizes(full_plan: ec.CorpusPlan) -> None:
    hours = full_plan.estimated_hours()
    assert 1.5 <= hours["unlabeled"] <= 2.0
    assert 35 <= hours["train-clean"] * 60 <= 45
    assert 5 <= hours["dev-clean"] * 60 <= 7
    for subset in ("test-clean", "test-other"):
        assert 6 <= hours[subset] * 60 <= 8
    assert hours["unlabeled"] == max(hours.values())
    est = np.array([u.est_sec for u in full_plan.utterances])
    assert np.mean((est >= 2) & (est <= 8)) > 0.9
    for s in full_plan.speakers:
        assert 1 <= len(s.chapters) <= 3


def test_spoken_text_matches_transcript(full_plan: ec.CorpusPlan) -> None:
    for u in full_plan.utterances[::7]:
        spoken = re.sub(r"[,.?]", "", u.text).upper().split()
        assert spoken == list(u.words), u.uid


def test_plan_depends_on_seed_only() -> None:
    a, b = ec.plan_sentences(7, 0.02), ec.plan_sentences(7, 0.02)
    assert a == b
    assert ec.plan_sentences(8, 0.02) != a


def test_morphology() -> None:
    assert ec.parse_verb("stop*") == ec.Verb("stop", "stops", "stopped", "stopped", "stopping")
    assert ec.parse_verb("carry").past == "carried"
    assert ec.parse_verb("agree").ing == "agreeing"
    assert ec.parse_verb("hope").ing == "hoping"
    assert ec.parse_verb("fix").s3 == "fixes"
    assert ec.number_words(342) == ["three", "hundred", "and", "forty", "two"]
    assert ec.number_words(1905) == ["one", "thousand", "nine", "hundred", "and", "five"]
    assert ec.year_words(1805) == ["eighteen", "oh", "five"]
    assert [ec.article(w) for w in ("apple", "useful", "hour", "red")] == ["an", "a", "an", "a"]


# ------------------------------------------------------------------ LM text
def _lm_lines(root: Path) -> list[str]:
    import gzip

    with gzip.open(root / ec.LM_TEXT, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def test_lm_text_format_and_no_dev_or_test_sentence(corpus: Path) -> None:
    lines = _lm_lines(corpus)
    assert len(lines) == max(ec.LM_MIN_SENTENCES, round(ec.LM_SENTENCES * float(SCALE)))
    assert all(re.fullmatch(r"[A-Z']+(?: [A-Z']+)*", ln) for ln in lines)  # LibriSpeech LM format
    trans = _transcripts(corpus)
    held = {t for s in ec.TEST_SUBSETS for t in trans[s].values()}
    assert held and not held & set(lines)
    # Mostly new sentences, not the training transcripts again.
    train = set(trans["train-clean"].values())
    assert len(set(lines) & train) < 0.01 * len(lines)
    record = json.loads((corpus / ec.MANIFEST).read_text())["lm_text"]
    assert record["sentences"] == len(lines) and record["file"] == ec.LM_TEXT


def test_lm_sentences_skip_held_out_draws(full_plan: ec.CorpusPlan) -> None:
    held = {u.transcript for u in full_plan.utterances if u.subset in ec.TEST_SUBSETS}
    lm = ec.lm_sentences(full_plan)
    assert len(lm) == ec.LM_SENTENCES and not held & set(lm)
    assert lm == ec.lm_sentences(full_plan)  # deterministic
    words = {w for t in lm for w in t.split()}
    test_words = [w for u in full_plan.utterances if u.subset in ec.TEST_SUBSETS for w in u.words]
    assert sum(w in words for w in test_words) / len(test_words) > 0.97


# ------------------------------------------------------------------ determinism, reruns
def test_same_seed_same_corpus(corpus: Path, corpus_again: Path) -> None:
    assert _transcripts(corpus) == _transcripts(corpus_again)
    assert (corpus / ec.LM_TEXT).read_bytes() == (corpus_again / ec.LM_TEXT).read_bytes()
    assert (corpus / "SPEAKERS.TXT").read_text() == (corpus_again / "SPEAKERS.TXT").read_text()
    flacs = sorted(p.relative_to(corpus) for p in corpus.rglob("*.flac"))
    assert flacs == sorted(p.relative_to(corpus_again) for p in corpus_again.rglob("*.flac"))
    for rel in flacs[::3]:
        a, _ = sf.read(str(corpus / rel), dtype="int16")
        b, _ = sf.read(str(corpus_again / rel), dtype="int16")
        assert np.array_equal(a, b), rel


def test_utterances_are_randomized(corpus: Path) -> None:
    """Gain and noise differ per utterance: levels and noise floors are not all equal."""
    levels, floors = [], []
    for path in sorted(corpus.rglob("*.flac"))[:12]:
        x, _ = sf.read(str(path))
        levels.append(20 * np.log10(np.sqrt(np.mean(x**2))))
        floors.append(20 * np.log10(np.sqrt(np.mean(x[:400] ** 2))))  # lead-in: noise only
        assert np.count_nonzero(x[:400]) > 300  # noise, not digital silence
        assert floors[-1] < levels[-1] - 15
    assert np.ptp(levels) > 2.0 and np.ptp(floors) > 3.0


def test_planned_durations_are_close(corpus: Path) -> None:
    plan = ec.build_plan(int(SEED), float(SCALE))
    err = [abs(sf.info(str(corpus / u.relpath)).duration - u.est_sec) / u.est_sec for u in plan.utterances]
    assert np.mean(err) < 0.15


def test_rerun_is_idempotent(corpus: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file()}
    proc = _make(corpus, "--seed", SEED, "--scale", SCALE)
    assert proc.returncode == 0, proc.stderr
    assert "already complete" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file()} == before


def test_interrupted_run_resumes(corpus: Path, tmp_path: Path) -> None:
    work = tmp_path / "c"
    shutil.copytree(corpus, work)
    flacs = sorted(work.rglob("*.flac"))
    removed = [flacs[0], flacs[len(flacs) // 2]]
    kept = flacs[1]
    originals = {p: sf.read(str(p), dtype="int16")[0] for p in removed}
    for p in removed:
        p.unlink()
    (work / ec.MANIFEST).unlink()  # the run "died" before finishing
    stale = removed[0].with_name(f".{removed[0].name}.999.tmp")
    stale.write_bytes(b"half a file")
    kept_mtime = kept.stat().st_mtime_ns

    proc = _make(work, "--seed", SEED, "--scale", SCALE)
    assert proc.returncode == 0, proc.stderr
    assert "2 to synthesize" in proc.stdout
    for p, audio in originals.items():
        assert np.array_equal(sf.read(str(p), dtype="int16")[0], audio)
    assert kept.stat().st_mtime_ns == kept_mtime
    assert not stale.exists()
    assert (work / ec.MANIFEST).is_file()


def test_corpus_without_lm_text_gets_it_without_new_audio(corpus: Path, tmp_path: Path) -> None:
    """A corpus made before the LM text existed is completed in place: only the text is new."""
    work = tmp_path / "c"
    shutil.copytree(corpus, work)
    (work / ec.LM_TEXT).unlink()
    flacs = {p: p.stat().st_mtime_ns for p in work.rglob("*.flac")}
    proc = _make(work, "--seed", SEED, "--scale", SCALE)
    assert proc.returncode == 0, proc.stderr
    assert "0 to synthesize" in proc.stdout
    assert (work / ec.LM_TEXT).read_bytes() == (corpus / ec.LM_TEXT).read_bytes()
    assert {p: p.stat().st_mtime_ns for p in work.rglob("*.flac")} == flacs


def test_refuses_other_parameters(corpus: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file()}
    proc = _make(corpus, "--seed", "8", "--scale", SCALE)
    assert proc.returncode == 2
    assert "other parameters" in proc.stderr and str(corpus) in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file()} == before


def test_refuses_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "README.TXT").write_text("a real corpus\n")
    proc = _make(tmp_path, "--scale", SCALE)
    assert proc.returncode == 2
    assert "not made by this script" in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["README.TXT"]


@pytest.mark.parametrize(
    "args, message", [(["--scale", "0"], "--scale"), (["--nj", "0"], "--nj"), (["--seed", "-1"], "--seed")]
)
def test_bad_arguments_fail_before_work(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "x"
    proc = _make(out, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not out.exists()
