"""Tests for the one log-Mel definition, the logmel frontend and stage 2.

All audio is real: espeak-ng speech written with soundfile (FLAC/WAV, several
rates and channel counts); archives are real kaldiio ark/scp files; the
reference is ESPnet's real DefaultFrontend.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile
import soxr
import torch

from espnet_ext import features as F
from espnet_ext.bin import extract_feats as XB
from espnet_ext.features import extract as X
from espnet_ext.features import logmel
from espnet_ext.frontend import LogMelFrontend

REPO = Path(__file__).resolve().parents[1]
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Speech recognition turns sound into words, one frame at a time.",
    "Seven silver spoons sat on the table near the window.",
    "A conformer encoder reads eighty channels of log mel features.",
]


def _espeak(text: str, path: Path, voice: str = "en-us") -> np.ndarray:
    """Synthesize ``text``; returns float32 mono at espeak's 22050 Hz."""
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", "170", "-w", str(path), text],
        check=True,
        capture_output=True,
    )
    wave, rate = soundfile.read(path, dtype="float32")
    assert rate == 22050
    return wave


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Audio files in several formats plus the 16 kHz speech they hold."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng (the audio is synthesized)")
    root = tmp_path_factory.mktemp("audio")
    raw = [_espeak(t, root / f"raw{i}.wav") for i, t in enumerate(SENTENCES)]
    s16 = [soxr.resample(w, 22050, 16000).astype(np.float32) for w in raw]
    files = {}
    files["a"] = root / "a.flac"  # 16 kHz mono FLAC, the common case
    soundfile.write(files["a"], s16[0], 16000, subtype="PCM_16")
    files["b"] = root / "b.wav"  # 48 kHz stereo
    s48 = soxr.resample(raw[1], 22050, 48000).astype(np.float32)
    soundfile.write(files["b"], np.stack([s48, 0.5 * s48], axis=1), 48000, subtype="FLOAT")
    files["c"] = root / "c.wav"  # 8 kHz mono
    soundfile.write(files["c"], soxr.resample(raw[2], 22050, 8000), 8000, subtype="PCM_16")
    files["long"] = root / "long.flac"  # a recording for segments
    long = np.concatenate([s16[3], np.zeros(8000, np.float32), s16[0]])
    soundfile.write(files["long"], long, 16000, subtype="PCM_16")
    files["corrupt"] = root / "corrupt.flac"
    files["corrupt"].write_bytes(b"fLaC" + np.random.default_rng(0).bytes(5000))
    files["truncated"] = root / "truncated.flac"
    files["truncated"].write_bytes(files["a"].read_bytes()[: files["a"].stat().st_size // 2])
    files["short"] = root / "short.wav"  # 20 ms: shorter than one 25 ms window
    soundfile.write(files["short"], s16[0][4000:4320], 16000)
    return {"files": files, "speech": s16, "long": long}


def _data_dir(path: Path, entries: dict, segments=None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "wav.scp").write_text("".join(f"{k} {v}\n" for k, v in sorted(entries.items())))
    utts = sorted(segments) if segments else sorted(entries)
    if segments:
        (path / "segments").write_text(
            "".join(f"{u} {r} {s} {e}\n" for u, (r, s, e) in sorted(segments.items()))
        )
    (path / "text").write_text("".join(f"{u} WORDS OF {u.upper()}\n" for u in utts))
    (path / "utt2spk").write_text("".join(f"{u} spk{i % 2}\n" for i, u in enumerate(utts)))
    spk = {}
    for i, u in enumerate(utts):
        spk.setdefault(f"spk{i % 2}", []).append(u)
    (path / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk.items())))
    return path


def _default_frontend():
    from espnet2.asr.frontend.default import DefaultFrontend

    return DefaultFrontend(fs=16000, n_fft=512, win_length=400, hop_length=160, n_mels=80).eval()


def _mtimes(root: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def _age(root: Path) -> None:
    """Set every file's mtime one hour back so that a rewrite is always visible."""
    past = os.stat(root).st_mtime - 3600
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, (past, past))


# ---------------------------------------------------------------------------
# The definition
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sr,n_fft,n_mels,fmin,fmax",
    [(16000, 512, 80, 0.0, 8000.0), (8000, 256, 40, 0.0, 4000.0), (16000, 512, 80, 20.0, 7600.0)],
)
def test_filterbank_is_librosa_slaney(sr, n_fft, n_mels, fmin, fmax):
    import librosa

    ours = F.slaney_mel_filterbank(sample_rate=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).T
    assert ours.shape == (n_fft // 2 + 1, n_mels) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-8)


def test_matches_default_frontend_before_normalization(corpus):
    """Tolerance: float32 FFT rounding. Within 60 dB of a frame's strongest Mel
    bin the log-Mel values agree to 2e-4; everywhere (bins down at the 1e-10
    floor, up to 230 dB below the peak) to 5e-3; the mean difference < 2e-5."""
    fe = _default_frontend()
    for wave in corpus["speech"]:
        with torch.no_grad():
            ref, ref_len = fe(torch.from_numpy(wave)[None], torch.tensor([wave.size]))
        ref = ref[0].numpy()
        ours = F.compute_features(wave, normalize=False)
        assert ours.shape == ref.shape and ours.dtype == np.float32
        assert int(ref_len[0]) == ours.shape[0]
        diff = np.abs(ours - ref)
        near_peak = ref >= ref.max(axis=1, keepdims=True) - np.log(1e6)
        assert diff[near_peak].max() <= 2e-4
        assert diff.max() <= 5e-3
        assert diff.mean() <= 2e-5


@pytest.mark.parametrize("n", [1, 100, 256, 257, 399, 400, 559, 560, 16000, 16159, 16160])
def test_frame_count(corpus, n):
    wave = corpus["speech"][0][:n]
    feats = F.compute_features(wave)
    assert feats.shape == (1 + n // 160, 80) == (F.num_frames(n), 80)
    assert np.isfinite(feats).all()
    if n > 256:  # torch.stft's reflect padding needs more than n_fft // 2 samples
        with torch.no_grad():
            _, lens = _default_frontend()(torch.from_numpy(wave)[None], torch.tensor([n]))
        assert int(lens[0]) == feats.shape[0]


def test_short_input_is_reflected_like_numpy():
    x = torch.arange(1.0, 6.0)
    for pad in (0, 2, 4, 9):
        expected = np.pad(x.numpy(), pad, mode="reflect")
        np.testing.assert_array_equal(logmel._reflect_pad(x, pad).numpy(), expected)


def test_per_utterance_normalization(corpus):
    for wave in corpus["speech"]:
        feats = F.compute_features(wave)
        np.testing.assert_allclose(feats.mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(feats.std(axis=0), 1.0, atol=1e-4)
    # digital silence: constant channels, floored std, zero output (no NaN)
    silent = F.compute_features(np.zeros(8000, np.float32))
    assert np.array_equal(silent, np.zeros_like(silent))


def _padded(waves, fill=0.0):
    width = max(w.size for w in waves)
    batch = torch.full((len(waves), width), fill)
    for i, w in enumerate(waves):
        batch[i, : w.size] = torch.from_numpy(w)
    return batch, torch.tensor([w.size for w in waves])


def test_batch_equals_single(corpus):
    s = corpus["speech"]
    waves = [s[0], s[1][:20000], s[2][5000:5300], s[3]]
    # garbage beyond the lengths must not matter
    batch, lengths = _padded(waves, fill=0.7)
    feats, frames = F.compute_features_batch(batch, lengths)
    assert frames.tolist() == [1 + w.size // 160 for w in waves]
    assert feats.shape == (4, max(frames), 80)
    for i, w in enumerate(waves):
        t = int(frames[i])
        # one batched pass (the frontend's) vs stage 2's single-utterance path
        torch.testing.assert_close(feats[i, :t], torch.from_numpy(F.compute_features(w)), rtol=0, atol=1e-5)
        assert torch.count_nonzero(feats[i, t:]) == 0
    raw, _ = F.compute_features_batch(batch, lengths, normalize=False)
    single = F.compute_features(waves[1], normalize=False)
    torch.testing.assert_close(raw[1, : int(frames[1])], torch.from_numpy(single), rtol=0, atol=1e-5)
    # the normalization on its own, over valid frames only
    torch.testing.assert_close(F.utterance_mvn(raw, frames), feats, rtol=0, atol=1e-6)
    # rows shorter than the reflection (256 samples), down to one sample
    short = [s[0][:100], s[1][:1], s[2][:3000]]
    batch, lengths = _padded(short, fill=0.7)
    feats, frames = F.compute_features_batch(batch, lengths)
    for i, w in enumerate(short):
        expected = torch.from_numpy(F.compute_features(w))
        torch.testing.assert_close(feats[i, : int(frames[i])], expected, rtol=0, atol=1e-5)


def test_bad_batch_arguments():
    with pytest.raises(ValueError, match="lengths must lie"):
        F.compute_features_batch(torch.zeros(2, 100), torch.tensor([100, 0]))
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        F.compute_features_batch(torch.zeros(100), torch.tensor([100]))
    with pytest.raises(ValueError, match="win_length"):
        F.LogMelOptions(win_length=600)


# ---------------------------------------------------------------------------
# The frontend
# ---------------------------------------------------------------------------


def test_frontend_waveform_batch_and_state(corpus):
    fe = LogMelFrontend()
    assert fe.output_size() == 80
    assert fe.state_dict() == {}  # window/filterbank are non-persistent buffers
    waves = [corpus["speech"][2], corpus["speech"][0][:9000]]
    batch, lengths = _padded(waves, fill=-0.3)
    feats, flens = fe(batch, lengths)
    assert feats.shape == (2, 1 + max(w.size for w in waves) // 160, 80)
    for i, w in enumerate(waves):
        expected = torch.from_numpy(F.compute_features(w))
        torch.testing.assert_close(feats[i, : int(flens[i])], expected, rtol=0, atol=1e-5)
        alone, _ = fe(torch.from_numpy(w)[None], torch.tensor([w.size]))
        torch.testing.assert_close(alone[0], feats[i, : int(flens[i])], rtol=0, atol=1e-5)
        assert torch.count_nonzero(feats[i, int(flens[i]) :]) == 0


def test_frontend_passes_features_through(corpus):
    fe = LogMelFrontend()
    feats = torch.randn(3, 50, 80)
    lengths = torch.tensor([50, 20, 7])
    out, out_len = fe(feats, lengths)
    assert out is feats and out_len is lengths


def test_frontend_multichannel_and_options(corpus):
    fe = LogMelFrontend(utterance_norm=False)
    w = torch.from_numpy(corpus["speech"][0])
    stereo = torch.stack([w, 0.25 * w], dim=-1)[None]  # (1, N, 2)
    out, _ = fe(stereo, torch.tensor([w.numel()]))
    mono, _ = fe((0.625 * w)[None], torch.tensor([w.numel()]))
    assert torch.equal(out, mono)
    from typeguard import TypeCheckError

    with pytest.raises(TypeCheckError):
        LogMelFrontend(n_mels="80")
    with pytest.raises(ValueError, match="fmax"):
        LogMelFrontend(fmax=9000.0)
    small = LogMelFrontend(fs=8000, n_fft=256, win_length=200, hop_length=80, n_mels=40)
    out, lens = small(w[None, :8000], torch.tensor([8000]))
    assert out.shape == (1, 101, 40) and int(lens[0]) == 101


# ---------------------------------------------------------------------------
# Audio reading
# ---------------------------------------------------------------------------


def test_read_audio_rates_and_channels(corpus):
    files, speech = corpus["files"], corpus["speech"]
    a = F.read_audio(str(files["a"]))
    assert a.dtype == np.float32 and a.shape == speech[0].shape
    np.testing.assert_allclose(a, speech[0], atol=1 / 32768)  # 16-bit FLAC round trip
    b = F.read_audio(str(files["b"]))  # 48 kHz stereo (x, x/2) -> 16 kHz mean 0.75 x
    info = soundfile.info(str(files["b"]))
    assert abs(b.size - info.frames / 3) <= 1
    ref = 0.75 * speech[1]
    n = min(ref.size, b.size)
    assert np.corrcoef(b[:n], ref[:n])[0, 1] > 0.99
    assert abs(np.std(b) / np.std(ref) - 1) < 0.02
    c = F.read_audio(str(files["c"]))  # 8 kHz -> 16 kHz
    assert abs(c.size - 2 * soundfile.info(str(files["c"])).frames) <= 1
    seg = F.read_audio(str(files["long"]), 1.0, 2.5)
    np.testing.assert_allclose(seg, corpus["long"][16000:40000], atol=1 / 32768)


def test_read_audio_errors(corpus, tmp_path):
    files = corpus["files"]
    with pytest.raises(F.AudioError, match="corrupt.flac"):
        F.read_audio(str(files["corrupt"]))
    with pytest.raises(F.AudioError, match="truncated.flac"):
        F.read_audio(str(files["truncated"]))
    with pytest.raises(F.AudioError, match="nothere.wav: cannot open"):
        F.read_audio(str(tmp_path / "nothere.wav"))
    with pytest.raises(F.AudioError, match="past the end"):
        F.read_audio(str(files["a"]), 100.0, 101.0)


# ---------------------------------------------------------------------------
# Stage 2
# ---------------------------------------------------------------------------


def _load(out_dir: Path) -> dict:
    return dict(kaldiio.load_scp(str(out_dir / "feats.scp")))


def test_extract_then_frontend_is_the_same(corpus, tmp_path):
    """The one-place guarantee: feats.scp == frontend on the wav file."""
    files = corpus["files"]
    data = _data_dir(tmp_path / "data", {"a": files["a"], "b": files["b"], "c": files["c"]})
    result = X.run(str(data), str(tmp_path / "dump"), nj=1, chunk_size=2, progress=False)
    assert result["status"] == "done" and result["written"] == 3
    stored = _load(tmp_path / "dump")
    fe = LogMelFrontend()
    # as ESPnet's sound reader gives it (float64 in [-1, 1]) for the 16 kHz file
    wave, rate = soundfile.read(str(files["a"]))
    assert rate == 16000
    feats, _ = fe(torch.tensor(wave, dtype=torch.float32)[None], torch.tensor([wave.size]))
    np.testing.assert_allclose(feats[0].numpy(), stored["a"], rtol=0, atol=1e-5)
    # all three through one padded batch: the frontend's one batched pass against the
    # single-utterance path stage 2 wrote, to float32 summation order
    waves = [F.read_audio(str(files[k])) for k in "abc"]
    batch, lengths = _padded(waves)
    feats, flens = fe(batch, lengths)
    for i, k in enumerate("abc"):
        np.testing.assert_allclose(feats[i, : int(flens[i])].numpy(), stored[k], rtol=0, atol=1e-5)


def test_batch_is_one_pass_not_a_loop(corpus):
    """The frontend's micro-batch is a fixed handful of kernels, whatever its size: one
    FFT for the batch (a per-utterance loop would launch one per row on the GPU)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    fe = LogMelFrontend()
    counts = {}
    for n in (1, 4, 12):
        waves = [corpus["speech"][i % 4][: 8000 + 997 * i] for i in range(n)]
        batch, lengths = _padded(waves)
        with torch.no_grad(), Count() as mode:
            fe(batch, lengths)
        counts[n] = mode.ops
    assert counts[4].count("_fft_r2c") == counts[12].count("_fft_r2c") == 1
    assert len(counts[1]) == len(counts[4]) == len(counts[12])


def test_extract_segments_rejections_and_metadata(corpus, tmp_path, caplog):
    files = corpus["files"]
    wavs = {
        "rec1": files["long"],
        "rec2": files["corrupt"],
        "rec3": files["short"],
        "rec4": files["truncated"],
    }
    segs = {
        "u1": ("rec1", 0.0, 1.5),
        "u2": ("rec1", 1.2, 3.05),
        "u3": ("rec1", 2.5, 99.0),  # end past the file: clipped
        "u4": ("rec2", 0.0, 1.0),  # corrupt
        "u5": ("rec3", 0.0, 1.0),  # 20 ms: too short
        "u6": ("rec9", 0.0, 1.0),  # recording not in wav.scp
        "u7": ("rec4", 0.0, 99.0),  # truncated FLAC: decoding fails midway
        "u8": ("rec1", 99.0, 100.0),  # starts past the end
    }
    data = _data_dir(tmp_path / "data", wavs, segs)
    out = tmp_path / "dump"
    with caplog.at_level("INFO"):
        result = X.run(str(data), str(out), nj=1, chunk_size=3, progress=False)
    assert (result["found"], result["written"], result["rejected"]) == (8, 3, 5)
    assert "found 8 = written 3 + rejected 5" in caplog.text
    stored = _load(out)
    assert list(stored) == ["u1", "u2", "u3"]
    long = soundfile.read(str(files["long"]), dtype="float32")[0]  # 16-bit samples
    for utt in ("u1", "u2"):
        _, s, e = segs[utt]
        expected = F.compute_features(long[round(s * 16000) : round(e * 16000)])
        np.testing.assert_array_equal(stored[utt], expected)
    assert stored["u3"].shape[0] == 1 + (long.size - 40000) // 160
    assert (out / "feats_shape").read_text().splitlines() == [
        f"{u} {stored[u].shape[0]},80" for u in ("u1", "u2", "u3")
    ]
    rejected = dict(line.split("\t") for line in (out / "rejected").read_text().splitlines())
    assert sorted(rejected) == ["u4", "u5", "u6", "u7", "u8"]
    assert "corrupt.flac" in rejected["u4"] and "too short" in rejected["u5"]
    assert "rec9" in rejected["u6"] and "truncated" in rejected["u7"]
    assert "past the end" in rejected["u8"]
    # metadata restricted to the written utterances
    text_keys = [line.split()[0] for line in (out / "text").read_text().splitlines()]
    assert text_keys == ["u1", "u2", "u3"]
    assert (out / "utt2spk").read_text() == "u1 spk0\nu2 spk1\nu3 spk0\n"
    assert (out / "spk2utt").read_text() == "spk0 u1 u3\nspk1 u2\n"
    done = json.loads((out / ".done").read_text())
    assert done["found"] == done["written"] + done["rejected"]


def test_resume_redoes_only_unfinished_chunks(corpus, tmp_path, caplog):
    files = corpus["files"]
    entries = {f"utt{i}": files["a" if i % 2 else "c"] for i in range(6)}
    data = _data_dir(tmp_path / "data", entries)
    out = tmp_path / "dump"
    X.run(str(data), str(out), nj=1, chunk_size=2, progress=False)
    before = {k: v.copy() for k, v in _load(out).items()}
    scp_before = (out / "feats.scp").read_text()
    # simulate a kill during chunk 1: its marker never written, a partial temp
    # ark left behind, the merge never reached
    shard_dir = out / "data" / "00000"  # the shard format's subdirectory of shards 0-499
    for name in ("feats.1.done", "feats.1.ark"):
        (shard_dir / name).unlink()
    (shard_dir / "feats.1.ark.tmp").write_bytes(b"partial")
    (out / ".done").unlink()
    (out / "feats.scp").unlink()
    _age(out)
    mtimes = _mtimes(out)
    with caplog.at_level("INFO"):
        result = X.run(str(data), str(out), nj=1, chunk_size=2, progress=False)
    assert result["status"] == "done"
    assert "3 chunks; 2 chunks already done, 1 to do" in caplog.text
    after = _mtimes(out)
    for k in (0, 2):
        for ext in ("ark", "scp", "done"):
            p = shard_dir / f"feats.{k}.{ext}"
            assert after[p] == mtimes[p], p
    assert (shard_dir / "feats.1.ark") in after and (shard_dir / "feats.1.done") in after
    assert not (shard_dir / "feats.1.ark.tmp").exists()
    assert (out / "feats.scp").read_text() == scp_before
    for k, v in _load(out).items():
        np.testing.assert_array_equal(v, before[k])


def test_rerun_is_idempotent_and_changes_are_seen(corpus, tmp_path, caplog):
    files = corpus["files"]
    data = _data_dir(tmp_path / "data", {"x": files["a"], "y": files["c"]})
    out = tmp_path / "dump"
    X.run(str(data), str(out), nj=1, chunk_size=1, progress=False)
    _age(out)
    mtimes = _mtimes(out)
    with caplog.at_level("INFO"):
        result = X.run(str(data), str(out), nj=1, chunk_size=1, progress=False)
    assert result["status"] == "already done"
    assert "already done" in caplog.text
    assert _mtimes(out) == mtimes
    # a changed transcript is copied again (with the shards' transcripts and the manifest
    # that records them); the features are left alone
    (data / "text").write_text("x NEW WORDS\ny OTHER WORDS\n")
    assert X.run(str(data), str(out), nj=1, chunk_size=1, progress=False)["status"] == "already done"
    assert (out / "text").read_text() == "x NEW WORDS\ny OTHER WORDS\n"
    assert "NEW WORDS" in "".join(p.read_text() for p in (out / "data").glob("*/text.*.txt"))

    def features(m):
        return {p: t for p, t in m.items() if p.name.startswith("feats.")}

    assert features(_mtimes(out)) == features(mtimes) and features(mtimes)
    # a changed wav.scp changes the fingerprint: re-extracted
    (data / "wav.scp").write_text(f"x {files['a']}\ny {files['b']}\n")
    result = X.run(str(data), str(out), nj=1, chunk_size=1, progress=False)
    assert result["status"] == "done"
    expected = F.compute_features(F.read_audio(str(files["b"])))
    np.testing.assert_array_equal(_load(out)["y"], expected)


@pytest.mark.slow
def test_parallel_workers_match_serial(corpus, tmp_path):
    files = corpus["files"]
    entries = {f"utt{i}": files["abc"[i % 3]] for i in range(6)}
    data = _data_dir(tmp_path / "data", entries)
    X.run(str(data), str(tmp_path / "serial"), nj=1, chunk_size=2, progress=False)
    X.run(str(data), str(tmp_path / "parallel"), nj=2, chunk_size=2, progress=False)
    serial, parallel = _load(tmp_path / "serial"), _load(tmp_path / "parallel")
    assert list(serial) == list(parallel) == sorted(entries)
    for k in serial:
        np.testing.assert_array_equal(serial[k], parallel[k])
    assert (tmp_path / "serial" / "feats_shape").read_text() == (
        tmp_path / "parallel" / "feats_shape"
    ).read_text()


def test_cli_errors(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_ext.bin.extract_feats",
            "--data_dir",
            str(tmp_path / "missing"),
            "--out_dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert "missing" in proc.stderr and "does not exist" in proc.stderr
    assert not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()
    assert XB.main(["--data_dir", str(tmp_path / "empty"), "--out_dir", str(tmp_path / "o")]) == 2
    pipe = _data_dir(tmp_path / "pipe", {"a": "flac -c -d -s a.flac |"})
    with pytest.raises(X.DataDirError, match="command pipe"):
        X.run(str(pipe), str(tmp_path / "o"))
    with pytest.raises(X.UsageError, match="--nj"):
        X.run(str(pipe), str(tmp_path / "o"), nj=0)
    assert not (tmp_path / "o").exists()


def test_stage_does_not_import_espnet2():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = (
        "import sys, espnet_ext.bin.extract_feats; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'espnet2'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert proc.stdout.strip() == "[]"


# ---------------------------------------------------------------------------
# --feats_type raw: audio shards
# ---------------------------------------------------------------------------


def test_raw_audio_shards_read_by_espnet_and_the_frontend(corpus, tmp_path):
    """Stage 2 with feats_type raw: FLAC in kaldiio archives that ESPnet's kaldi_ark
    reader and the shard reader both decode; the frontend on them gives the features
    that feats_type fbank writes (16 kHz 16-bit sources decode to the very samples)."""
    from espnet2.train.dataset import kaldi_loader

    from espnet_ext.shards import format as S

    files = corpus["files"]
    entries = {"a": files["a"], "b": files["b"], "c": files["c"], "short": files["short"]}
    data = _data_dir(tmp_path / "data", entries)
    raw = X.run(str(data), str(tmp_path / "raw"), nj=1, chunk_size=2, progress=False, feats_type="raw")
    fbank = X.run(str(data), str(tmp_path / "fbank"), nj=1, chunk_size=2, progress=False)
    assert raw["written"] == fbank["written"] == 3 and raw["rejected"] == 1
    out = tmp_path / "raw"
    assert not (out / "feats.scp").exists() and (out / "wav.scp").is_file()
    assert "short" in (out / "rejected").read_text() and "short" not in (out / "wav.scp").read_text()
    waves = {k: F.read_audio(str(files[k])) for k in "abc"}
    shapes = dict(line.split() for line in (out / "speech_shape").read_text().splitlines())
    assert shapes == {k: str(w.size) for k, w in waves.items()}
    # ESPnet's own reader of wav.scp (the kaldi_ark type)
    espnet = kaldi_loader(str(out / "wav.scp"))
    for k, w in waves.items():
        np.testing.assert_allclose(espnet[k], w, rtol=0, atol=1 / 32768 + 1e-7)
    np.testing.assert_array_equal(espnet["a"].astype(np.float32), waves["a"])  # 16-bit source: exact
    # the shard index carries samples and frames; the reader checks them
    manifest = S.ShardManifest.load(str(out / "wav.scp"))
    assert manifest.kind == "audio" and manifest.sample_rate == 16000 and manifest.has_text
    assert S.verify(str(out)) == []
    fe, stored = LogMelFrontend(), _load(tmp_path / "fbank")
    fds: dict = {}
    for row in range(manifest.n_shards):
        index = manifest.read_index(row, with_text=True)
        for utt, off, t, n, text in zip(index.utts, index.offsets, index.frames, index.samples, index.texts):
            wave = manifest.load_matrix(row, utt, off, t, fds)
            assert wave.shape == (n,) and t == 1 + n // 160 and text == f"WORDS OF {utt.upper()}"
            if utt == "a":
                feats, _ = fe(torch.from_numpy(wave)[None], torch.tensor([n]))
                np.testing.assert_allclose(feats[0].numpy(), stored["a"], rtol=0, atol=1e-5)
    for fd in fds.values():
        fd.close()
    # a re-run changes nothing; switching to fbank in the same dir removes the audio
    mtimes = _mtimes(out)
    assert (
        X.run(str(data), str(out), nj=1, chunk_size=2, progress=False, feats_type="raw")["status"]
        == "already done"
    )
    assert _mtimes(out) == mtimes
    X.run(str(data), str(out), nj=1, chunk_size=2, progress=False)
    assert not (out / "wav.scp").exists() and not list(out.glob("data/*/audio.*"))
    assert S.ShardManifest.load(str(out)).kind == "feats"
    with pytest.raises(X.UsageError, match="feats_type"):
        X.run(str(data), str(out), feats_type="mfcc")


def test_raw_shard_corruption_is_named(corpus, tmp_path):
    from espnet_ext.shards import format as S

    data = _data_dir(tmp_path / "data", {"a": corpus["files"]["a"], "c": corpus["files"]["c"]})
    out = tmp_path / "raw"
    X.run(str(data), str(out), nj=1, chunk_size=5, progress=False, feats_type="raw")
    idx = next(out.glob("data/*/audio.0.idx"))
    lines = idx.read_text().splitlines()
    utt, off, t, n = lines[0].split("\t")
    manifest = S.ShardManifest.load(str(out))
    with pytest.raises(S.ShardError, match=f"{utt}.*index says {int(t) + 1} frames"):
        manifest.load_matrix(0, utt, int(off), int(t) + 1, {})
    idx.write_text("\n".join([f"{utt}\t{off}\t{int(t) + 1}\t{n}", *lines[1:]]) + "\n")
    problems = S.verify(str(out))
    assert len(problems) == 1 and "audio.0.idx" in problems[0]


@pytest.mark.parametrize("feats_type", ["raw", "fbank"])
def test_low_resource_subset_is_a_data_dir_stage_2_shards(corpus, tmp_path, feats_type):
    """Stage 9's subset: a seeded Kaldi data dir drawn by stage 2's durations (samples of
    speech_shape, or frames of feats_shape), never an utterance stage 2 rejected; stage 2
    then shards it like any other set. A re-run changes nothing; too few minutes is an error."""
    from espnet_ext.bin.subset_data import subset
    from espnet_ext.shards import format as S

    files = corpus["files"]
    entries = {k: files[k] for k in ("a", "b", "c", "long", "short")}
    data = _data_dir(tmp_path / "data", entries)
    X.run(str(data), str(tmp_path / "dump"), nj=1, chunk_size=2, progress=False, feats_type=feats_type)
    shape = tmp_path / "dump" / ("speech_shape" if feats_type == "raw" else "feats_shape")
    seconds = S.shape_seconds(str(shape))
    assert sorted(seconds) == ["a", "b", "c", "long"]  # "short" was rejected by stage 2
    assert seconds["a"] == pytest.approx(corpus["speech"][0].size / 16000, abs=0.011)
    minutes = (max(seconds.values()) + 0.1) / 60  # more than any one utterance
    dst = tmp_path / "data_low"
    chosen = subset(data, shape, dst, minutes, seed=0)
    assert 2 <= len(chosen) < 4 and "short" not in chosen
    assert sum(seconds[u] for u in chosen) >= minutes * 60
    assert sorted((dst / "wav.scp").read_text().split()[0::2]) == chosen
    assert {line.split()[1] for line in (dst / "utt2spk").read_text().splitlines()} == {"spk0", "spk1"}
    out = X.run(
        str(dst), str(tmp_path / "dump_low"), nj=1, chunk_size=2, progress=False, feats_type=feats_type
    )
    assert out["written"] == len(chosen) and S.ShardManifest.load(str(tmp_path / "dump_low")).n_utts == len(
        chosen
    )
    before = {p: p.stat().st_mtime_ns for p in dst.iterdir()}
    assert subset(data, shape, dst, minutes, seed=0) == chosen
    assert {p: p.stat().st_mtime_ns for p in dst.iterdir()} == before
    with pytest.raises(ValueError, match="min available"):
        subset(data, shape, tmp_path / "too_much", 60.0, seed=0)


def test_launcher_counts_audio_shards_in_the_iterators_units(corpus, tmp_path):
    """The launcher's data size for speech_shape (samples): the sharded iterator counts
    feature frames x 80 (its budgets' units, from the manifest), ESPnet's stock iterator
    the samples of the shape file; both give the hours."""
    from espnet_ext.distributed.batch_settings import data_size, read_batch_settings

    files = corpus["files"]
    data = _data_dir(tmp_path / "data", {k: files[k] for k in ("a", "b", "c")})
    out = tmp_path / "dump"
    X.run(str(data), str(out), nj=1, chunk_size=2, progress=False, feats_type="raw")
    samples = [int(line.split()[1]) for line in (out / "speech_shape").read_text().splitlines()]
    config = Path(__file__).resolve().parents[1] / "conf" / "finetune_conformer_transformer_embedded.yaml"
    base = ["--config", str(config), "--train_shape_file", str(out / "speech_shape")]
    sharded = data_size(read_batch_settings(base))
    stock = data_size(read_batch_settings(base + ["--iterator_type", "sequence"]))
    assert sharded.utterances == stock.utterances == 3
    assert sharded.numel == sum(1 + n // 160 for n in samples) * 80
    assert stock.numel == sum(samples)
    assert stock.seconds == pytest.approx(sum(samples) / 16000)
    assert sharded.seconds == pytest.approx(stock.seconds, abs=0.011 * 3)


def test_probe_reads_the_audio_shards(corpus, tmp_path):
    """The probe and extract_ssl_features take a raw dump (wav.scp into FLAC shards)."""
    from espnet_ext.probe.upstream import iter_utterances

    files = corpus["files"]
    data = _data_dir(tmp_path / "data", {"a": files["a"], "c": files["c"]})
    X.run(str(data), str(tmp_path / "dump"), nj=1, chunk_size=2, progress=False, feats_type="raw")
    got = dict(iter_utterances(tmp_path / "dump"))
    assert sorted(got) == ["a", "c"] and all(w.dtype == np.float32 and w.ndim == 1 for w in got.values())
    np.testing.assert_array_equal(got["a"], F.read_audio(str(files["a"])))


def test_malformed_shape_file_is_named_by_both_readers(tmp_path):
    """One parser (shards.format.iter_shapes) behind stage 9's durations and the launcher's count."""
    from espnet_ext.distributed.batch_settings import data_size, read_batch_settings
    from espnet_ext.distributed.errors import LaunchError
    from espnet_ext.shards import format as S

    shape = tmp_path / "speech_shape"
    shape.write_text("a 16000\nb 16x00\n")
    with pytest.raises(ValueError, match=r"speech_shape:2: bad shape '16x00'"):
        S.shape_seconds(str(shape))
    config = Path(__file__).resolve().parents[1] / "conf" / "finetune_conformer_transformer_embedded.yaml"
    settings = read_batch_settings(
        ["--config", str(config), "--train_shape_file", str(shape), "--iterator_type", "sequence"]
    )
    with pytest.raises(LaunchError, match=r"speech_shape:2: bad shape '16x00'"):
        data_size(settings)
    shape.write_text("a 16000\n")
    assert S.shape_seconds(str(shape)) == {"a": 1.0} and data_size(settings).seconds == 1.0
