"""Tests for stage 1 data preparation (espnet_ext.data) on real audio files in
the real LibriSpeech, Libri-Light and Common Voice layouts."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from espnet_ext.data import audio as audio_mod
from espnet_ext.data.combine import read_data_dir
from espnet_ext.data.commonvoice import speaker_id
from espnet_ext.data.librilight import fixed_cuts, vad_cuts
from espnet_ext.data.prepare import ConfigError, Options, prepare
from espnet_ext.data.rules import REJECT_RULES, REPAIR_RULES, RULES, normalize_transcript
from espnet_ext.data.validate import DataDirError, validate_data_dir

REPO = Path(__file__).resolve().parents[1]
MAX_UTT = 3.0  # --max_utt_seconds used in these tests
SEG = 20.0  # --segment_seconds used in these tests


# ---------------------------------------------------------------- audio helpers


def _signal(seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    x = (0.2 * np.sin(2 * np.pi * (180 + 40 * seed) * t) + 0.02 * rng.standard_normal(n)).astype(np.float32)
    if channels > 1:
        x = np.stack([x * (1.0 - 0.2 * c) for c in range(channels)], axis=1)
    return x


def write_audio(path: Path, seconds: float, sr: int = 16000, channels: int = 1, seed: int = 0, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), _signal(seconds, sr, channels, seed), sr, **kw)
    return path


def write_truncated_flac(path: Path, seconds: float = 1.0) -> Path:
    """A FLAC whose header is intact but whose body is cut short."""
    write_audio(path, seconds, seed=7)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_garbage(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not audio at all " * 40)
    return path


def read_table(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        k, _, v = line.partition(" ")
        out[k] = v
    return out


def read_rejected(d: Path) -> dict[str, str]:
    """id -> rule name."""
    out = {}
    for line in (d / "rejected").read_text(encoding="utf-8").splitlines():
        ident, reason = line.split("\t", 1)
        out[ident] = reason.split(":", 1)[0]
    return out


def soxr_len(frames: int, rate: int) -> int:
    """The length soxr gives when resampling ``frames`` at ``rate`` to 16 kHz."""
    return len(soxr.resample(np.zeros(frames, dtype=np.float32), rate, 16000))


def flat(pairs) -> list[float]:
    return [float(x) for pair in pairs for x in pair]


def mtimes(d: Path) -> dict[str, int]:
    return {str(p.relative_to(d)): p.stat().st_mtime_ns for p in sorted(d.rglob("*"))}


# ---------------------------------------------------------------- corpus fixtures

SPEAKERS_TXT = """\
; Some of the speakers are not in every subset.
;ID  |SEX| SUBSET           |MINUTES| NAME
19   | F | dev-clean        | 25.19 | Kara Shallenberg
26   | M | dev-clean        | 25.08 | Denny Sayers
103  | F | train-clean-100  | 25.11 | Karen Savage
200  | F | unlabeled        | 25.03 | Maureen S. O'Brien
"""

# LibriSpeech dev-clean: (id, audio kind, transcript or None) and the expected outcome.
LS_ITEMS = [
    ("19-198-0000", "ok", "NORTHANGER ABBEY", "kept"),
    ("19-198-0001", "ok", "this is lower case", "kept"),
    ("19-198-0002", "ok", "HELLO, WORLD! IT\u2019S \u201cFINE\u201d.", "kept"),
    ("19-198-0003", "ok", "?! --", "empty_text"),
    ("19-198-0004", None, "A LINE WITH NO AUDIO", "no_audio"),
    ("19-198-0005", "ok", None, "no_transcript"),
    ("19-227-0000", "zero_bytes", "EMPTY FILE", "empty_audio"),
    ("19-227-0001", "garbage", "GARBAGE FILE", "corrupt_audio"),
    ("19-227-0002", "truncated", "TRUNCATED FILE", "corrupt_audio"),
    ("19-227-0003", "22050", "RESAMPLE ME", "kept"),
    ("19-227-0004", "stereo", "TWO CHANNELS", "kept"),
    ("26-495-0000", "long", "FAR TOO LONG", "too_long"),
    ("26-495-0001", "silent", "ALL ZERO", "silent_audio"),
    ("26-495-0002", "tiny", "TOO SHORT", "too_short"),
    ("26-495-0003", "ok", "LISTED TWICE", "kept"),
]


def _make_ls_audio(path: Path, kind: str, seed: int) -> None:
    if kind == "ok":
        write_audio(path, 1.0, seed=seed)
    elif kind == "zero_bytes":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    elif kind == "garbage":
        write_garbage(path)
    elif kind == "truncated":
        write_truncated_flac(path)
    elif kind == "22050":
        write_audio(path, 1.01, sr=22050, seed=seed)
    elif kind == "stereo":
        write_audio(path, 1.0, channels=2, seed=seed)
    elif kind == "long":
        write_audio(path, MAX_UTT + 1.0, seed=seed)
    elif kind == "silent":
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), np.zeros(16000, dtype=np.float32), 16000)
    elif kind == "tiny":
        write_audio(path, 0.05, seed=seed)
    else:
        raise AssertionError(kind)


@pytest.fixture(scope="module")
def librispeech_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("LibriSpeech")
    (root / "SPEAKERS.TXT").write_text(SPEAKERS_TXT)
    trans: dict[Path, list[str]] = {}
    for seed, (utt, kind, text, _) in enumerate(LS_ITEMS):
        spk, chap, _ = utt.split("-")
        folder = root / "dev-clean" / spk / chap
        folder.mkdir(parents=True, exist_ok=True)
        if kind is not None:
            _make_ls_audio(folder / f"{utt}.flac", kind, seed)
        lines = trans.setdefault(folder / f"{spk}-{chap}.trans.txt", [])
        if text is not None:
            lines.append(f"{utt} {text}")
    chap26 = root / "dev-clean" / "26" / "495" / "26-495.trans.txt"
    trans[chap26].append("26-495-0003 LISTED TWICE AGAIN")  # duplicate_id
    trans[chap26].append("99-1-0000 A LINE IN THE WRONG CHAPTER")  # bad_id
    for path, lines in trans.items():
        path.write_text("\n".join(lines) + "\n")
    # A clean labeled subset and an unlabeled one (no trans.txt at all).
    for i in range(3):
        write_audio(root / "train-clean-100" / "103" / "1240" / f"103-1240-{i:04d}.flac", 0.8, seed=20 + i)
    (root / "train-clean-100" / "103" / "1240" / "103-1240.trans.txt").write_text(
        "".join(f"103-1240-{i:04d} TRAINING SENTENCE NUMBER {i}\n" for i in range(3))
    )
    for i in range(2):
        write_audio(root / "unlabeled" / "200" / "7" / f"200-7-{i:04d}.flac", 0.9, seed=30 + i)
    return root


# Libri-Light: voice activity of the first file and the segments expected for SEG = 20 s.
LL_VAD = [[0.5, 8.0], [8.6, 15.0], [15.5, 19.0], [19.8, 24.0], [25.0, 50.0], [55.0, 55.3], [60.0, 69.0]]
LL_EXPECTED = [(0.4, 19.1), (19.7, 37.5), (37.5, 55.4), (59.9, 69.1)]


def _ll_json(vad) -> str:
    return json.dumps(
        {
            "speaker": "100",
            "book_meta": {"id": "812", "title": "Sea Fairies", "authors": [{"name": "L. Frank Baum"}]},
            "snr": 12.5,
            "voice_activity": vad,
        }
    )


@pytest.fixture(scope="module")
def librilight_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("librilight")
    book = root / "small" / "100" / "sea_fairies_0812_librivox_64kb_mp3"
    write_audio(book / "01_baum_sea_fairies_64kb.flac", 70.0, seed=1)
    (book / "01_baum_sea_fairies_64kb.json").write_text(_ll_json(LL_VAD))
    write_audio(book / "02_baum_sea_fairies_64kb.flac", 65.0, seed=2)  # no .json: fixed cuts
    write_audio(book / "03_baum_sea_fairies_64kb.flac", 61.0, seed=3)
    (book / "03_baum_sea_fairies_64kb.json").write_text("{not json")  # unreadable: fixed cuts
    other = root / "small" / "2001" / "other_book_librivox_64kb_mp3"
    write_garbage(other / "04_corrupt.flac")
    (other / "04_corrupt.json").write_text(_ll_json([[0.0, 5.0]]))
    write_audio(other / "05_blip.flac", 3.0, seed=5)
    (other / "05_blip.json").write_text(_ll_json([[1.0, 1.2]]))  # only a blip: no_speech
    write_audio(root / "small" / "2001" / "stray.flac", 2.0, seed=6)  # wrong depth: bad_id
    return root


CV_HEADER = (
    "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\t"
    "variant\tlocale\tsegment"
)


def _cv_row(client: str, clip: str, sentence: str) -> str:
    return "\t".join([client, clip, "a1b2", sentence, "", "2", "0", "twenties", "", "", "", "en", ""])


CV_ROWS = [
    ("c0ffee01", "common_voice_en_1.mp3", "Hello, world!", "kept"),
    ("c0ffee01", "common_voice_en_2.mp3", 'He said "hi" to the O\'Neil family.', "kept"),
    ("beef0002", "common_voice_en_3.mp3", "It\u2019s 5 o\u2019clock.", "kept"),
    ("beef0002", "common_voice_en_404.mp3", "This clip is missing.", "no_audio"),
    ("cafe0003", "common_voice_en_5.mp3", "", "empty_text"),
    ("cafe0003", "common_voice_en_6.mp3", "Garbage audio.", "corrupt_audio"),
]


@pytest.fixture(scope="module")
def commonvoice_root(tmp_path_factory) -> Path:
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot write MP3")
    root = tmp_path_factory.mktemp("cv-corpus-en")
    for i, (_, clip, _, _) in enumerate(CV_ROWS):
        if clip.endswith("404.mp3"):
            continue
        if clip.endswith("_6.mp3"):
            write_garbage(root / "clips" / clip)
        else:
            write_audio(root / "clips" / clip, 1.2, sr=48000, seed=40 + i, format="MP3")
    rows = [_cv_row(c, p, s) for c, p, s, _ in CV_ROWS]
    rows.append("deadbeef\tcommon_voice_en_7.mp3\tonly three columns")  # bad_row
    rows.append(rows[0])  # duplicate_id
    (root / "validated.tsv").write_text(CV_HEADER + "\n" + "\n".join(rows) + "\n")
    (root / "train.tsv").write_text(CV_HEADER + "\n" + "\n".join(rows[:3]) + "\n")
    return root


def run(datadir: Path, sets: str, **kw):
    options = kw.pop("options", Options(max_utt_seconds=MAX_UTT, segment_seconds=SEG, nj=1))
    return prepare(datadir, sets.split(), options=options, **kw)


# ---------------------------------------------------------------- rules


def test_rules_table_is_complete():
    assert set(REJECT_RULES) | set(REPAIR_RULES) == set(RULES)
    for name, rule in RULES.items():
        assert rule.action in ("reject", "repair") and rule.description, name
    doc = sys.modules["espnet_ext.data.rules"].__doc__
    for name in RULES:
        assert f"``{name}``" in doc, f"rule {name} is not documented in the rules module docstring"


@pytest.mark.parametrize(
    "raw, expected, repairs",
    [
        ("ALREADY CLEAN", "ALREADY CLEAN", []),
        ("mixed Case words", "MIXED CASE WORDS", ["uppercase"]),
        ("HELLO, WORLD!", "HELLO WORLD", ["punctuation"]),
        ("don't 'quote' me, students' work", "DON'T QUOTE ME STUDENTS WORK", ["uppercase", "punctuation"]),
        ("it\u2019s well-known", "IT'S WELL KNOWN", ["uppercase", "punctuation"]),
        ("  ?! ... ", "", ["punctuation"]),
        ("", "", []),
        ("costs $5 (approx.)", "COSTS 5 APPROX", ["uppercase", "punctuation"]),
        ("Ça va très bien", "ÇA VA TRÈS BIEN", ["uppercase"]),
    ],
)
def test_normalize_transcript(raw, expected, repairs):
    text, got = normalize_transcript(raw)
    assert text == expected
    assert got == repairs


# ---------------------------------------------------------------- LibriSpeech


def test_librispeech_every_bad_input_case(librispeech_root, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    reports, failures = run(tmp_path, "dev_clean", librispeech_root=librispeech_root)
    assert failures == []
    d = tmp_path / "dev_clean"
    (report,) = reports
    expected_kept = sorted(u for u, _, _, outcome in LS_ITEMS if outcome == "kept")
    assert read_table(d / "utt2spk") == {u: u.split("-")[0] for u in expected_kept}

    rejected = read_rejected(d)
    for utt, _, _, outcome in LS_ITEMS:
        if outcome != "kept":
            assert rejected.get(utt) == outcome, utt
    assert rejected["99-1-0000"] == "bad_id"
    # 26-495-0003 is kept once and its repeated transcript line is rejected.
    assert rejected["26-495-0003"] == "duplicate_id"
    assert "26-495-0003" in read_table(d / "text")

    found = len(LS_ITEMS) + 2
    assert report.found == found
    assert report.kept == len(expected_kept)
    assert report.found == report.kept + sum(report.rejected.values())
    assert report.rejected == dict(
        Counter(o for _, _, _, o in LS_ITEMS if o != "kept") + Counter(["duplicate_id", "bad_id"])
    )
    assert report.repaired == {"uppercase": 1, "punctuation": 1, "resample": 1, "downmix": 1}
    assert f"found {found}, kept {len(expected_kept)}" in caplog.text
    assert "rejected 11" in caplog.text

    text = read_table(d / "text")
    assert text["19-198-0001"] == "THIS IS LOWER CASE"
    assert text["19-198-0002"] == "HELLO WORLD IT'S FINE"
    wav = read_table(d / "wav.scp")
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in wav.values())
    n = {k: int(v) for k, v in read_table(d / "utt2num_samples").items()}
    assert n["19-198-0000"] == 16000
    assert n["19-227-0003"] == soxr_len(round(1.01 * 22050), 22050)  # counted at 16 kHz
    assert n["19-227-0004"] == 16000
    assert read_table(d / "spk2utt") == {
        "19": "19-198-0000 19-198-0001 19-198-0002 19-227-0003 19-227-0004",
        "26": "26-495-0003",
    }
    assert not (d / "segments").exists()
    summary = validate_data_dir(d, check_audio=True)
    assert summary.utterances == len(expected_kept) and summary.speakers == 2 and summary.labeled


def test_librispeech_unlabeled_subset_and_folder_names(librispeech_root, tmp_path):
    reports, failures = run(tmp_path, "unlabeled train_clean_100", librispeech_root=librispeech_root)
    assert failures == []
    assert not (tmp_path / "unlabeled" / "text").exists()
    assert sorted(read_table(tmp_path / "unlabeled" / "utt2spk")) == ["200-7-0000", "200-7-0001"]
    assert read_table(tmp_path / "train_clean_100" / "text")["103-1240-0002"] == "TRAINING SENTENCE NUMBER 2"
    assert [r.kept for r in reports] == [2, 3]
    assert (tmp_path / "unlabeled" / "rejected").read_text() == ""


def test_probe_audio_full_vs_header(tmp_path):
    truncated = write_truncated_flac(tmp_path / "t.flac")
    full = audio_mod.probe_audio(str(truncated), "full")
    header = audio_mod.probe_audio(str(truncated), "header")
    assert full.rule == "corrupt_audio" and str(truncated) in full.detail
    assert header.ok and header.frames == 16000  # the header alone cannot tell
    assert audio_mod.probe_audio(str(tmp_path / "missing.flac")).rule == "no_audio"


def test_probe_audio_float_wav_with_nan_is_corrupt(tmp_path):
    x = _signal(0.5, 16000)
    x[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(str(path), x, 16000, subtype="FLOAT")
    info = audio_mod.probe_audio(str(path))
    assert info.rule == "corrupt_audio" and "non-finite" in info.detail
    sf.write(str(path), _signal(0.5, 8000, channels=3), 8000, subtype="FLOAT")
    info = audio_mod.probe_audio(str(path))
    assert info.ok and (info.samplerate, info.channels, info.frames, info.num_samples) == (
        8000,
        3,
        4000,
        8000,
    )


def test_probe_many_process_pool_matches_serial(librispeech_root):
    paths = sorted(str(p) for p in (librispeech_root / "dev-clean").rglob("*.flac"))
    serial = audio_mod.probe_many(paths, nj=1)
    pooled = audio_mod.probe_many(paths, nj=2)
    assert serial == pooled
    assert Counter(i.rule for i in serial.values()) == {
        None: 10,
        "empty_audio": 1,
        "corrupt_audio": 2,
        "silent_audio": 1,
    }


# ---------------------------------------------------------------- Libri-Light


def test_vad_cuts_packs_at_silences_and_splits_long_stretches():
    cuts, dropped = vad_cuts(70.0, [tuple(v) for v in LL_VAD], 20.0)
    assert flat(cuts) == pytest.approx(flat(LL_EXPECTED))
    assert dropped == 0
    # The 25 s stretch exceeds the limit, so it is split in its middle (37.5 s).
    assert all(e - s <= 20.0 for s, e in cuts)
    # An isolated blip between full segments is dropped; padding never crosses a gap's midpoint.
    cuts, dropped = vad_cuts(60.0, [(0.0, 19.9), (30.0, 30.2), (40.0, 59.9)], 20.0)
    assert flat(cuts) == pytest.approx([0.0, 19.95, 39.95, 59.95]) and dropped == 1
    assert vad_cuts(10.0, [(5.0, 4.0), (11.0, 12.0)], 20.0) == ([], 0)


def test_fixed_cuts():
    assert flat(fixed_cuts(65.0, 20.0)) == pytest.approx([0, 16.25, 16.25, 32.5, 32.5, 48.75, 48.75, 65.0])
    assert flat(fixed_cuts(40.0, 20.0)) == pytest.approx([0, 20.0, 20.0, 40.0])
    assert flat(fixed_cuts(5.0, 20.0)) == pytest.approx([0, 5.0])


def test_librilight_segments(librilight_root, tmp_path):
    reports, failures = run(tmp_path, "ll_small", librilight_root=librilight_root)
    assert failures == []
    (r,) = reports
    d = tmp_path / "ll_small"
    assert r.found == 6 and r.kept == 3 and r.found == r.kept + sum(r.rejected.values())
    assert r.rejected == {"corrupt_audio": 1, "no_speech": 1, "bad_id": 1}
    assert r.repaired == {"vad_segment": 1, "fixed_segment": 2}
    assert r.segments_dropped == 1
    assert not (d / "text").exists()

    rec1 = "100-sea_fairies_0812_librivox_64kb_mp3-01_baum_sea_fairies_64kb"
    wav = read_table(d / "wav.scp")
    assert sorted(wav) == sorted([rec1, rec1.replace("01_", "02_"), rec1.replace("01_", "03_")])
    segs = {u: v.split() for u, v in read_table(d / "segments").items()}
    mine = sorted((u, float(s), float(e)) for u, (rec, s, e) in segs.items() if rec == rec1)
    assert [u for u, _, _ in mine] == [f"{rec1}-{k:04d}" for k in range(4)]
    assert [x for _, s, e in mine for x in (s, e)] == pytest.approx(flat(LL_EXPECTED))
    fixed = sorted(
        (float(s), float(e)) for u, (rec, s, e) in segs.items() if rec.endswith("02_baum_sea_fairies_64kb")
    )
    assert flat(fixed) == pytest.approx([0, 16.25, 16.25, 32.5, 32.5, 48.75, 48.75, 65.0])
    assert len(segs) == 4 + 4 + 4
    n = {k: int(v) for k, v in read_table(d / "utt2num_samples").items()}
    for u, (_, s, e) in segs.items():
        assert float(e) - float(s) <= SEG
        assert n[u] == round(float(e) * 16000) - round(float(s) * 16000)
    assert set(read_table(d / "utt2spk").values()) == {"100"}
    rejected = read_rejected(d)
    assert rejected["2001-other_book_librivox_64kb_mp3-04_corrupt"] == "corrupt_audio"
    assert rejected["2001-other_book_librivox_64kb_mp3-05_blip"] == "no_speech"
    assert list(rejected.values()).count("bad_id") == 1
    validate_data_dir(d, check_audio=True)


# ---------------------------------------------------------------- Common Voice


def test_commonvoice(commonvoice_root, tmp_path):
    reports, failures = run(tmp_path, "cv_validated cv_train", commonvoice_root=commonvoice_root)
    assert failures == []
    r = reports[0]
    assert r.found == len(CV_ROWS) + 2 and r.kept == 3
    assert r.rejected == {"no_audio": 1, "empty_text": 1, "corrupt_audio": 1, "bad_row": 1, "duplicate_id": 1}
    assert r.repaired == {"resample": 3, "uppercase": 3, "punctuation": 3}
    d = tmp_path / "cv_validated"
    spk_a, spk_b = speaker_id("c0ffee01"), speaker_id("beef0002")
    assert len(spk_a) == 12 and spk_a != spk_b
    assert read_table(d / "text") == {
        f"{spk_a}-common_voice_en_1": "HELLO WORLD",
        f"{spk_a}-common_voice_en_2": "HE SAID HI TO THE O'NEIL FAMILY",
        f"{spk_b}-common_voice_en_3": "IT'S 5 O'CLOCK",
    }
    assert read_table(d / "utt2spk")[f"{spk_b}-common_voice_en_3"] == spk_b
    rejected = read_rejected(d)
    assert rejected[f"{spk_b}-common_voice_en_404"] == "no_audio"
    assert rejected[f"{speaker_id('cafe0003')}-common_voice_en_5"] == "empty_text"
    assert rejected["common_voice_en_7.mp3"] == "bad_row"
    # 48 kHz MP3s: the sample count is the decoded length at 16 kHz.
    n = read_table(d / "utt2num_samples")
    frames = sf.info(str(commonvoice_root / "clips" / "common_voice_en_1.mp3")).frames
    assert int(n[f"{spk_a}-common_voice_en_1"]) == soxr_len(frames, 48000)
    validate_data_dir(d, check_audio=True)
    assert reports[1].kept == 3 and reports[1].rejected == {}


# ---------------------------------------------------------------- existing Kaldi dirs


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def test_existing_user_dir_rules_and_derived_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_audio(tmp_path / "audio" / "ep1.wav", 2.0, seed=1)
    write_audio(tmp_path / "audio" / "ep2.flac", 1.5, sr=44100, channels=2, seed=2)
    d = tmp_path / "data" / "podcast"
    _write(
        d / "wav.scp",
        [
            "ep2 " + str(tmp_path / "audio" / "ep2.flac"),
            "ep1 audio/ep1.wav",  # relative to the current directory
            "ep3 " + str(tmp_path / "audio" / "missing.wav"),
            "ep4 sox audio/ep1.wav -t wav - |",
            "ep6 " + str(write_audio(tmp_path / "audio" / "episode 6.wav", 1.0)),  # a space in the path
        ],
    )
    _write(d / "utt2spk", ["ep2 guest", "ep1 host", "ep3 host", "ep4 host", "ep5 host", "ep6 host"])
    _write(
        d / "text",
        [
            "ep1 welcome to the show.",
            "ep2 Thanks for having me!",
            "ep3 gone",
            "ep4 piped",
            "ep5 no wav entry",
            "ep6 x",
        ],
    )
    original_text = (d / "text").read_text()
    reports, failures = run(tmp_path / "data", "podcast")
    assert failures == []
    (r,) = reports
    assert r.kind == "kaldi_dir" and r.found == 6 and r.kept == 2
    assert r.rejected == {"no_audio": 2, "unsupported_wav_entry": 2}
    assert r.repaired == {
        "relative_path": 1,
        "speaker_prefix": 2,
        "uppercase": 2,
        "punctuation": 2,
        "resample": 1,
        "downmix": 1,
    }
    # utt2spk was not sorted by speaker ("ep2 guest" after "ep1 host"): ids get the speaker prefix.
    assert read_table(d / "utt2spk") == {"guest-ep2": "guest", "host-ep1": "host"}
    assert read_table(d / "text") == {"guest-ep2": "THANKS FOR HAVING ME", "host-ep1": "WELCOME TO THE SHOW"}
    assert read_table(d / "wav.scp")["host-ep1"] == str(tmp_path / "audio" / "ep1.wav")
    assert read_table(d / "spk2utt") == {"guest": "guest-ep2", "host": "host-ep1"}
    assert read_table(d / "utt2num_samples") == {
        "guest-ep2": str(soxr_len(round(1.5 * 44100), 44100)),
        "host-ep1": "32000",
    }
    assert read_rejected(d) == {
        "ep3": "no_audio",
        "ep4": "unsupported_wav_entry",
        "ep5": "no_audio",
        "ep6": "unsupported_wav_entry",
    }
    assert (d / ".orig" / "text").read_text() == original_text
    validate_data_dir(d, check_audio=True)
    # Re-running changes nothing.
    before = mtimes(d)
    run(tmp_path / "data", "podcast")
    assert mtimes(d) == before


def test_existing_dir_with_segments(tmp_path):
    rec = write_audio(tmp_path / "audio" / "meeting.flac", 10.0, seed=3)
    d = tmp_path / "data" / "meeting"
    _write(d / "wav.scp", [f"m1 {rec}"])
    _write(d / "segments", ["s1-m1-a m1 0.5 2.25", "s1-m1-b m1 8 -1", "s1-m1-c m1 12 14", "s1-m1-d m1 1 x"])
    _write(d / "utt2spk", ["s1-m1-a s1", "s1-m1-b s1", "s1-m1-c s1", "s1-m1-d s1"])
    reports, failures = run(tmp_path / "data", "meeting")
    assert failures == []
    (r,) = reports
    assert r.kept == 2 and r.rejected == {"bad_segment": 2} and r.repaired == {"segment_clipped": 1}
    assert read_table(d / "segments") == {"s1-m1-a": "m1 0.5 2.25", "s1-m1-b": "m1 8 10"}
    assert read_table(d / "utt2num_samples") == {"s1-m1-a": "28000", "s1-m1-b": "32000"}
    validate_data_dir(d, check_audio=True)


def test_existing_dir_unreadable_file_fails_that_set_only(tmp_path, librispeech_root):
    d = tmp_path / "broken"
    d.mkdir()
    (d / "wav.scp").write_bytes(b"a /x.wav\n\xff\xfe bad bytes\n")
    (d / "utt2spk").write_text("a a\n")
    reports, failures = run(tmp_path, "broken train_clean_100", librispeech_root=librispeech_root)
    assert [r.name for r in reports] == ["train_clean_100"]
    assert len(failures) == 1 and f"{d / 'wav.scp'}:2" in failures[0] and "UTF-8" in failures[0]


# ---------------------------------------------------------------- validator


def _valid_dir(tmp_path: Path) -> Path:
    wav_a = write_audio(tmp_path / "audio" / "a.flac", 1.0, seed=1)
    wav_b = write_audio(tmp_path / "audio" / "b.flac", 2.0, seed=2)
    d = tmp_path / "valid"
    _write(d / "wav.scp", [f"A-r1 {wav_a}", f"B-r2 {wav_b}"])
    _write(d / "segments", ["A-r1-0 A-r1 0 0.5", "A-r1-1 A-r1 0.5 1", "B-r2-0 B-r2 0.25 2"])
    _write(d / "utt2spk", ["A-r1-0 A", "A-r1-1 A", "B-r2-0 B"])
    _write(d / "spk2utt", ["A A-r1-0 A-r1-1", "B B-r2-0"])
    _write(d / "text", ["A-r1-0 ONE", "A-r1-1 TWO", "B-r2-0 THREE"])
    _write(d / "utt2num_samples", ["A-r1-0 8000", "A-r1-1 8000", "B-r2-0 28000"])
    return d


def _edit(path: Path, lineno: int, new: str | None) -> None:
    lines = path.read_text().splitlines()
    if new is None:
        del lines[lineno - 1]
    else:
        lines[lineno - 1] = new
    path.write_text("".join(line + "\n" for line in lines))


@pytest.mark.parametrize(
    "file, lineno, new, where, message",
    [
        ("text", 1, "A-r1-1 TWO", "text:2", "duplicate id"),
        ("text", 2, "A-r0-1 TWO", "text:2", "not sorted"),
        ("text", 2, "A-r1-1", "text:2", "empty transcript"),
        ("text", 3, None, "utt2spk:3", "has no entry in text"),
        ("utt2num_samples", 1, "A-r1-0 -3", "utt2num_samples:1", "positive"),
        ("utt2num_samples", 3, "B-r2-0 12345", "utt2num_samples:3", "segment"),
        ("utt2num_samples", 2, "A-r1-1 many", "utt2num_samples:2", "not an integer"),
        ("segments", 2, "A-r1-1 A-r1 0.9 0.6", "segments:2", "start < end"),
        ("segments", 3, "B-r2-0 B-r3 0.25 2", "segments:3", "not in wav.scp"),
        ("spk2utt", 1, "A A-r1-0", "spk2utt:1", "not the inverse of utt2spk"),
        ("utt2spk", 3, "B-r2-0 0B", "utt2spk:3", "sorted by speaker"),
        ("wav.scp", 2, "B-r2 /no/such/file.flac", "wav.scp:2", "does not exist"),
        ("wav.scp", 1, "A-r1 flac -d -c a.flac |", "wav.scp:1", "command pipe"),
        ("wav.scp", 1, "A-r1 audio/a.flac", "wav.scp:1", "not absolute"),
        ("segments", 3, "B-r2-0 B-r2 0.25 9", "segments:3", "after the end"),
    ],
)
def test_validator_reports_file_and_line(tmp_path, file, lineno, new, where, message):
    d = _valid_dir(tmp_path)
    validate_data_dir(d, check_audio=True)
    if file == "segments" and new and new.endswith(" 9"):
        _edit(d / "utt2num_samples", 3, "B-r2-0 140000")
    _edit(d / file, lineno, new)
    with pytest.raises(DataDirError) as e:
        validate_data_dir(d, check_audio=True)
    assert f"{d / where.split(':')[0]}:{where.split(':')[1]}:" in str(e.value)
    assert message in str(e.value)


def test_validator_missing_files(tmp_path):
    d = _valid_dir(tmp_path)
    (d / "spk2utt").unlink()
    with pytest.raises(DataDirError, match="spk2utt: missing"):
        validate_data_dir(d)
    assert validate_data_dir(d, require_derived=False).utterances == 3
    for name in ("wav.scp", "segments", "utt2spk", "text", "utt2num_samples"):
        (d / name).write_text("")
    with pytest.raises(DataDirError, match="utt2spk:1: no utterances"):
        validate_data_dir(d, require_derived=False)


# ---------------------------------------------------------------- combine


def test_combine(librispeech_root, librilight_root, tmp_path):
    reports, failures = run(
        tmp_path,
        "dev_clean train_clean_100 ll_small",
        combine="pretrain=dev_clean,ll_small labeled=dev_clean,train_clean_100",
        librispeech_root=librispeech_root,
        librilight_root=librilight_root,
    )
    assert failures == []
    pre = tmp_path / "pretrain"
    data = read_data_dir(pre)
    assert data.text is None  # ll_small has no text
    assert len(data.utt2spk) == 6 + 12
    # dev_clean had no segments: each utterance became a whole-recording segment.
    seg = data.segments["19-198-0000"]
    assert (seg.recording, seg.start, seg.end) == ("19-198-0000", 0.0, 1.0)
    assert data.utt2num_samples["19-227-0003"] == soxr_len(round(1.01 * 22050), 22050)
    rejected = (pre / "rejected").read_text().splitlines()
    assert len(rejected) == 11 + 3
    lab = read_data_dir(tmp_path / "labeled")
    assert lab.text is not None and len(lab.text) == 6 + 3 and lab.segments is None
    validate_data_dir(pre, check_audio=True)
    assert [r.name for r in reports][-2:] == ["pretrain", "labeled"]


def test_combine_id_collision_names_id_and_both_sets(librispeech_root, tmp_path):
    run(tmp_path, "train_clean_100", librispeech_root=librispeech_root)
    shutil.copytree(tmp_path / "train_clean_100", tmp_path / "copy")
    (tmp_path / "copy" / ".done").unlink()
    reports, failures = run(tmp_path, "copy", combine="both=train_clean_100,copy")
    assert [r.name for r in reports] == ["copy"]
    assert len(failures) == 1
    assert "'103-1240-0000'" in failures[0] and "'train_clean_100'" in failures[0] and "'copy'" in failures[0]
    assert not (tmp_path / "both").exists()


# ---------------------------------------------------------------- resolution and configuration


def test_unresolvable_sets_fail_before_any_work(librispeech_root, tmp_path):
    datadir = tmp_path / "data"
    with pytest.raises(ConfigError) as e:
        run(datadir, "dev_clean nope ll_medium cv_dev", librispeech_root=librispeech_root)
    msg = str(e.value)
    assert "set 'nope'" in msg and "set 'll_medium'" in msg and "set 'cv_dev'" in msg
    assert "set 'dev_clean'" not in msg
    assert str(datadir / "nope" / "wav.scp") in msg
    assert str(librispeech_root / "nope") in msg
    assert "--librilight not given" in msg and "--commonvoice not given" in msg
    assert "does not start with 'll_'" in msg
    assert not datadir.exists()  # nothing was done, not even dev_clean


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"combine": "pretrain=dev_clean,missing"}, "source set 'missing'"),
        ({"combine": "pretrain"}, "not of the form"),
        ({"options": Options(max_utt_seconds=0)}, "--max_utt_seconds"),
        ({"options": Options(nj=0)}, "--nj"),
        ({"librilight_root": "/no/such/dir"}, "--librilight /no/such/dir"),
    ],
)
def test_bad_configuration(librispeech_root, tmp_path, kw, message):
    with pytest.raises(ConfigError, match=message):
        run(tmp_path / "data", "dev_clean", librispeech_root=librispeech_root, **kw)
    assert not (tmp_path / "data").exists()


def test_whitespace_in_a_root_is_a_configuration_error(librispeech_root, tmp_path):
    with pytest.raises(ConfigError, match="whitespace"):
        run(tmp_path / "my data", "dev_clean", librispeech_root=librispeech_root)


def test_combine_refuses_to_overwrite_user_dir(librispeech_root, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my own work")
    with pytest.raises(ConfigError, match="not made by --combine"):
        run(tmp_path, "train_clean_100", combine="mine=train_clean_100", librispeech_root=librispeech_root)


# ---------------------------------------------------------------- re-runs


def test_rerun_changes_nothing_and_changes_are_picked_up(librispeech_root, tmp_path, caplog):
    root = tmp_path / "LibriSpeech"
    shutil.copytree(librispeech_root, root)
    datadir = tmp_path / "data"
    kw = dict(librispeech_root=root, combine="both=dev_clean,train_clean_100")
    run(datadir, "dev_clean train_clean_100", **kw)
    before = mtimes(datadir)
    caplog.set_level(logging.INFO)
    reports, failures = run(datadir, "dev_clean train_clean_100", **kw)
    assert failures == [] and all(r.skipped for r in reports)
    assert mtimes(datadir) == before
    assert caplog.text.count("already done") == 3
    assert reports[0].found == len(LS_ITEMS) + 2  # counts come back from .done

    # A changed input file is seen; so is a changed option.
    write_audio(root / "train-clean-100" / "103" / "1240" / "103-1240-0000.flac", 0.5, seed=99)
    reports, _ = run(datadir, "dev_clean train_clean_100", **kw)
    assert [r.skipped for r in reports] == [True, False, False]
    assert read_table(datadir / "train_clean_100" / "utt2num_samples")["103-1240-0000"] == "8000"
    reports, _ = run(
        datadir,
        "dev_clean",
        librispeech_root=root,
        options=Options(max_utt_seconds=MAX_UTT + 2, segment_seconds=SEG),
    )
    assert not reports[0].skipped and "26-495-0000" in read_table(datadir / "dev_clean" / "utt2spk")
    # A deleted output is seen too.
    (datadir / "train_clean_100" / "spk2utt").unlink()
    reports, _ = run(datadir, "train_clean_100", librispeech_root=root)
    assert not reports[0].skipped and (datadir / "train_clean_100" / "spk2utt").is_file()
    assert not list(datadir.glob(".*staging")) and not list(datadir.glob(".*old"))


def test_prepared_set_without_its_corpus_is_an_existing_dir(librispeech_root, tmp_path):
    run(tmp_path, "train_clean_100", librispeech_root=librispeech_root)
    d = tmp_path / "train_clean_100"
    before = mtimes(d)
    reports, failures = run(tmp_path, "train_clean_100")  # no --librispeech this time
    assert failures == [] and reports[0].kind == "kaldi_dir" and not reports[0].skipped
    after = mtimes(d)
    # The rules find nothing to change: only the .done marker is rewritten (now as an existing dir).
    assert {k: v for k, v in after.items() if k != ".done"} == {
        k: v for k, v in before.items() if k != ".done"
    }
    assert json.loads((d / ".done").read_text())["kind"] == "kaldi_dir"
    reports, _ = run(tmp_path, "train_clean_100")
    assert reports[0].skipped and mtimes(d) == after


# ---------------------------------------------------------------- CLI


def test_cli_end_to_end(librispeech_root, librilight_root, commonvoice_root, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    datadir = tmp_path / "data"
    cmd = [
        sys.executable, "-m", "espnet_ext.bin.prepare_data",
        "--datadir", str(datadir),
        "--sets", "dev_clean unlabeled ll_small cv_validated",
        "--combine", "pretrain=unlabeled,ll_small,cv_validated",
        "--librispeech", str(librispeech_root),
        "--librilight", str(librilight_root),
        "--commonvoice", str(commonvoice_root),
        "--max_utt_seconds", str(MAX_UTT), "--segment_seconds", str(SEG), "--nj", "2",
    ]  # fmt: skip
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "dev_clean (librispeech" in p.stderr and "found 17, kept 6" in p.stderr
    v = subprocess.run(
        [sys.executable, "-m", "espnet_ext.bin.validate_data", *(str(datadir / s) for s in ("dev_clean", "pretrain"))],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert v.returncode == 0, v.stderr
    assert "pretrain: OK: 17 utterances" in v.stdout
    # A broken dir: the CLI names file and line and exits 1.
    _edit(datadir / "dev_clean" / "text", 2, "19-198-0001")
    v = subprocess.run(
        [sys.executable, "-m", "espnet_ext.bin.validate_data", str(datadir / "dev_clean")],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert v.returncode == 1 and f"{datadir / 'dev_clean' / 'text'}:2: empty transcript" in v.stderr
    # A set with no source: exit 2, nothing done.
    p = subprocess.run(cmd[:5] + ["--sets", "nowhere"], env=env, capture_output=True, text=True)
    assert p.returncode == 2 and "set 'nowhere': no source found" in p.stderr
