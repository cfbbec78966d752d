"""The sharded path for fine-tuning (speech + transcripts) and the LM (text-only
shards), weighted mixing of sources, and Libri-Light's limited-supervision sets.

Audio: espeak-ng speech written as FLAC (as in test_shards.py), features by the real stage 2.
"""

import collections
import shutil
import subprocess

import numpy as np
import pytest
import soundfile
from espnet2.train.collate_fn import CommonCollateFn

from espnet_ext.data import prepare as prep
from espnet_ext.features import extract as X
from espnet_ext.shards import format as S
from espnet_ext.shards import plan as P
from espnet_ext.shards import text as ST
from espnet_ext.shards.iterator import ShardedIterFactory

N = 60


def _ids(iterator):
    return [tuple(ids) for ids, _ in iterator]


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng")
    root = tmp_path_factory.mktemp("labeled")
    raw = root / "raw.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(raw), "one two three four five six seven eight nine ten"],
        check=True,
        capture_output=True,
    )
    wave, rate = soundfile.read(raw, dtype="float32")
    soundfile.write(root / "rec.wav", wave, rate)
    seconds = wave.size / rate
    data = root / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"rec {root / 'rec.wav'}\n")
    rng = np.random.default_rng(0)
    seg, text, u2s = [], [], []
    for i in range(N):
        dur = rng.uniform(0.3, 1.5)
        start = rng.uniform(0, seconds - dur)
        seg.append(f"u{i:03d} rec {start:.2f} {start + dur:.2f}\n")
        text.append(f"u{i:03d} WORD {i} {'X' * (i % 7)}\n")
        u2s.append(f"u{i:03d} {'big' if i < 45 else 'small'}\n")
    (data / "segments").write_text("".join(seg))
    (data / "text").write_text("".join(text))
    (data / "utt2source").write_text("".join(u2s))
    out = root / "dump"
    X.run(str(data), str(out), nj=1, chunk_size=8, progress=False)
    return out


def _texts(dump):
    return {
        u: t.strip() for u, t in (line.split(" ", 1) for line in (dump / "text").read_text().splitlines())
    }


def test_stage2_keeps_transcripts_and_cuts_shards_per_source(labeled):
    m = S.ShardManifest.load(str(labeled))
    assert m.text_pattern == S.TEXT_PATTERN and m.sources == ["big", "small"]
    # 45 + 15 utterances in chunks of 8, never mixed: 6 + 2 shards
    assert m.source.tolist() == [0] * 6 + [1] * 2 and m.n_utts == N
    texts = _texts(labeled)
    for row in range(m.n_shards):
        index = m.read_index(row, with_text=True)
        assert index.texts == [texts[u] for u in index.utts]
    assert S.verify(str(labeled)) == []
    # a changed text file: the transcripts are rewritten, the features are not re-extracted
    data = labeled.parent / "data"
    orig = (data / "text").read_text()
    (data / "text").write_text(orig.replace("WORD 3 ", "CHANGED 3 "))
    try:
        assert X.run(str(data), str(labeled), nj=1, chunk_size=8, progress=False)["status"] == "already done"
        m = S.ShardManifest.load(str(labeled))
        row = next(r for r in range(m.n_shards) if "u003" in m.read_index(r).utts)
        assert any(t.startswith("CHANGED 3") for t in m.read_index(row, with_text=True).texts)
    finally:
        (data / "text").write_text(orig)
        X.run(str(data), str(labeled), nj=1, chunk_size=8, progress=False)


def test_bad_transcripts_are_named(labeled, tmp_path):
    copy = tmp_path / "dump"
    shutil.copytree(labeled, copy)
    path = copy / "data" / "00000" / "text.2.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[1:]) + "\n")
    m = S.ShardManifest.load(str(copy))
    with pytest.raises(
        S.ShardError, match=r"shard 2 .*text.2.txt:1: transcript of 'u017', the index has 'u016'"
    ):
        m.read_index(2, with_text=True)
    (copy / "text").write_text("u000 A\n")
    with pytest.raises(S.ShardError, match=r"utterance 'u001' has no transcript in"):
        ST.write_transcripts(str(copy), copy / "text")


def _asr_factory(dump, **kw):
    kw.setdefault("rule", P.BatchRule("count", 3))
    kw.setdefault("window", 16)
    return ShardedIterFactory(
        str(dump / "feats.scp"),
        collate_fn=CommonCollateFn(int_pad_value=-1),
        text_name="text",
        preprocess_fn=_tokenize,
        **kw,
    )


def _tokenize(utt, data):
    return {**data, "text": np.array([len(w) for w in data["text"].split()], dtype=np.int64)}


@pytest.mark.parametrize("world,streams", [(1, 1), (2, 2), (3, 1)])
def test_asr_every_utterance_once_with_its_transcript(labeled, world, streams):
    texts = _texts(labeled)
    seen = collections.Counter()
    steps = set()
    for rank in range(world):
        n = 0
        for ids, batch in _asr_factory(
            labeled, rank=rank, world_size=world, streams_per_rank=streams
        ).build_iter(1):
            n += 1
            seen.update(ids)
            assert set(batch) == {"speech", "speech_lengths", "text", "text_lengths"}
            for i, u in enumerate(ids):
                want = _tokenize(u, {"text": texts[u]})["text"]
                assert batch["text"][i, : len(want)].tolist() == want.tolist()
        steps.add(n)
    assert set(seen.values()) == {1} and len(seen) == N and len(steps) == 1


def test_asr_through_audio_shards(labeled):
    """--feats_type raw: the same iterator over FLAC shards yields padded waveforms with
    their transcripts, every utterance once, batched as the feature shards are (by the
    features' frames); the model's logmel frontend makes the features of the batch."""
    import torch

    from espnet_ext.frontend import LogMelFrontend

    data = labeled.parent / "data"
    raw = labeled.parent / "dump_raw"
    X.run(str(data), str(raw), nj=1, chunk_size=8, progress=False, feats_type="raw")
    m = S.ShardManifest.load(str(raw / "wav.scp"))
    assert m.kind == "audio" and m.sources == ["big", "small"] and m.has_text
    assert m.frames.tolist() == S.ShardManifest.load(str(labeled)).frames.tolist()
    samples = {
        u: int(n) for u, n in (line.split() for line in (raw / "speech_shape").read_text().splitlines())
    }
    texts, seen, fe = _texts(labeled), collections.Counter(), LogMelFrontend()
    feats_batches = [ids for ids, _ in _asr_factory(labeled).build_iter(1)]
    audio_batches = []
    for ids, batch in ShardedIterFactory(
        str(raw / "wav.scp"),
        collate_fn=CommonCollateFn(int_pad_value=-1),
        text_name="text",
        preprocess_fn=_tokenize,
        rule=P.BatchRule("count", 3),
        window=16,
    ).build_iter(1):
        audio_batches.append(ids)
        seen.update(ids)
        assert batch["speech"].dim() == 2
        assert batch["speech_lengths"].tolist() == [samples[u] for u in ids]
        for i, u in enumerate(ids):
            want = _tokenize(u, {"text": texts[u]})["text"]
            assert batch["text"][i, : len(want)].tolist() == want.tolist()
        feats, lengths = fe(batch["speech"], batch["speech_lengths"])
        assert feats.shape[-1] == 80 and lengths.tolist() == [1 + samples[u] // 160 for u in ids]
        assert torch.isfinite(feats).all()
    assert set(seen.values()) == {1} and len(seen) == N
    assert audio_batches == feats_batches  # the same plan: lengths in the features' frames


def test_asr_resume_mid_epoch_is_exact(labeled):
    full = list(_asr_factory(labeled, streams_per_rank=2, num_workers=2).build_iter(1))
    for k in (1, 5, len(full) - 1):
        epoch = _asr_factory(labeled, streams_per_rank=2, num_workers=2).build_iter(1)
        epoch.set_start_batch(k)
        rest = list(epoch)
        assert [i for i, _ in rest] == [i for i, _ in full[k:]]
        for (_, a), (_, b) in zip(rest, full[k:]):
            assert all(np.array_equal(a[key].numpy(), b[key].numpy()) for key in a)


def test_asr_without_transcripts_is_refused(tmp_path, labeled):
    copy = tmp_path / "dump"
    shutil.copytree(labeled, copy)
    m = S.ShardManifest.load(str(copy))
    S.write_manifest(copy, [m.row(r) for r in range(m.n_shards)], feat_dim=80)
    with pytest.raises(P.PlanError, match="no transcripts .*re-run stage 2"):
        _asr_factory(copy)


def test_arks_stay_open_per_worker(labeled, monkeypatch):
    import kaldiio.matio as matio

    opened = []
    real = matio.open_like_kaldi

    def counting(name, mode="r"):
        opened.append(name)
        return real(name, mode)

    monkeypatch.setattr(matio, "open_like_kaldi", counting)
    factory = _asr_factory(labeled, window=64)
    batches = list(factory.build_iter(1))
    assert len(batches) == 20 and len(opened) == S.ShardManifest.load(str(labeled)).n_shards  # once each


# ---------------------------------------------------------------------------
# The LM: text-only shards
# ---------------------------------------------------------------------------


@pytest.fixture
def lm_dir(tmp_path):
    lines = [f"s{i:04d} " + " ".join(["w"] * (1 + i % 9)) for i in range(250)]
    (tmp_path / "text").write_text("\n".join(lines) + "\n")
    (tmp_path / "text_shape.bpe").write_text("".join(f"s{i:04d} {1 + i % 9}\n" for i in range(250)))
    path, written = ST.write_text_shards(
        str(tmp_path / "text"), str(tmp_path / "text_shape.bpe"), str(tmp_path), shard_size=40
    )
    assert written
    return tmp_path


def test_lm_text_shards_once_per_pass_and_resume(lm_dir):
    m = S.ShardManifest.load(str(lm_dir / "text"))
    assert m.kind == "text" and m.n_shards == 7 and m.n_utts == 250 and m.feat_dim == 0
    assert (
        ST.write_text_shards(
            str(lm_dir / "text"), str(lm_dir / "text_shape.bpe"), str(lm_dir), shard_size=40
        )[1]
        is False
    )  # up to date
    assert S.verify(str(lm_dir)) == []

    def factory(**kw):
        return ShardedIterFactory(
            str(lm_dir / "text"),
            rule=P.BatchRule("count", 8),
            window=64,
            name=None,
            text_name="text",
            collate_fn=CommonCollateFn(int_pad_value=0),
            preprocess_fn=lambda u, d: {"text": np.ones(len(d["text"].split()), dtype=np.int64)},
            **kw,
        )

    seen = collections.Counter()
    for rank in range(2):
        for ids, batch in factory(rank=rank, world_size=2, streams_per_rank=2).build_iter(1):
            seen.update(ids)
            assert batch["text_lengths"].tolist() == [1 + int(u[1:]) % 9 for u in ids]
    assert len(seen) == 250 and set(seen.values()) == {1}
    full = _ids(factory(streams_per_rank=2, num_workers=2).build_iter(2))
    epoch = factory(streams_per_rank=2, num_workers=2).build_iter(2)
    epoch.set_start_batch(9)
    assert _ids(epoch) == full[9:]


def test_lm_text_shards_bad_input_is_named(lm_dir):
    (lm_dir / "text_shape.bpe").write_text("s0000 1\ns0002 2\n")
    with pytest.raises(S.ShardError, match=r"text:2 / .*text_shape.bpe:2: 's0001' against 's0002 2'"):
        ST.write_text_shards(str(lm_dir / "text"), str(lm_dir / "text_shape.bpe"), str(lm_dir / "o"))


# ---------------------------------------------------------------------------
# Weighted mixing
# ---------------------------------------------------------------------------


def _mix_factory(dump, mix, **kw):
    return ShardedIterFactory(
        str(dump), rule=P.BatchRule("count", 3), window=16, collate_fn=CommonCollateFn(), mix=mix, **kw
    )


def test_weighted_mixing_draws_by_weight_deterministic_and_resumable(labeled):
    m = S.ShardManifest.load(str(labeled))
    mix = P.source_mix(m.sources, [1.0, 1.0], weights=P.parse_source_weights("big:0.5 small:0.5"))
    drawn = collections.Counter()
    for rank in range(2):
        for ids in _ids(_mix_factory(labeled, mix, rank=rank, world_size=2).build_iter(1)):
            drawn.update(ids)
    small = sum(c for u, c in drawn.items() if int(u[1:]) >= 45)
    assert sum(drawn.values()) == N and small == 30  # 15 utterances up-weighted to half of the pass
    assert max(c for u, c in drawn.items() if int(u[1:]) >= 45) >= 2  # drawn with replacement
    f = _mix_factory(labeled, mix)
    hours = f.hours_drawn(1)
    assert set(hours) == {"big", "small"}
    a = _ids(f.build_iter(3))
    assert a == _ids(_mix_factory(labeled, mix).build_iter(3)) and a != _ids(f.build_iter(4))
    epoch = _mix_factory(labeled, mix).build_iter(3)
    epoch.set_start_batch(4)
    assert _ids(epoch) == a[4:]
    # temperature: T -> large is uniform over sources, T = 1 proportional to hours
    t1 = P.source_mix(m.sources, [3.0, 1.0], temperature=1.0)
    assert np.allclose(t1.probs, [0.75, 0.25])
    assert np.allclose(P.source_mix(m.sources, [3.0, 1.0], temperature=1e6).probs, [0.5, 0.5], atol=1e-5)
    # no weights: as before (every utterance once per pass)
    plain = collections.Counter(u for ids in _ids(_mix_factory(labeled, None).build_iter(1)) for u in ids)
    assert len(plain) == N and set(plain.values()) == {1}


def test_bad_weights_are_named(labeled):
    m = S.ShardManifest.load(str(labeled))
    with pytest.raises(P.PlanError, match="not a source of the shards: podcasts.*no weight for: small"):
        P.source_mix(m.sources, [1, 1], weights=P.parse_source_weights("big:1 podcasts:1"))
    with pytest.raises(P.PlanError, match="'big=1'"):
        P.parse_source_weights("big=1")


def test_weighted_mixing_logs_hours_per_source(labeled, caplog):
    m = S.ShardManifest.load(str(labeled))
    mix = P.source_mix(m.sources, [1, 1], weights=[("big", 3), ("small", 1)])
    with caplog.at_level("INFO"):
        list(_mix_factory(labeled, mix).build_iter(1))
    assert "pass 1 draws big" in caplog.text and "small" in caplog.text


# ---------------------------------------------------------------------------
# Libri-Light's limited supervision sets
# ---------------------------------------------------------------------------


def _flac(path, seconds, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).standard_normal(int(16000 * seconds)).astype(np.float32) * 0.1
    soundfile.write(path, noise, 16000, format="FLAC", subtype="PCM_16")


def _chapter(base, spk, chap, n, seed):
    d = base / str(spk) / str(chap)
    lines = []
    for i in range(n):
        utt = f"{spk}-{chap}-{i:04d}"
        _flac(d / f"{utt}.flac", 0.3 + 0.05 * i, seed + i)
        lines.append(f"{utt} HELLO WORLD {i}\n")
    (d / f"{spk}-{chap}.trans.txt").write_text("".join(lines))


def test_librilight_limited_supervision_sets(tmp_path):
    ll = tmp_path / "librilight"
    ft = ll / "librispeech_finetuning"
    n = 0
    for i in range(6):
        for kind in ("clean", "other"):
            _chapter(ft / "1h" / str(i) / kind, 100 + 10 * i + (kind == "other"), 7, 2, n)
            n += 2
    _chapter(ft / "9h" / "clean", 900, 1, 3, 100)
    _chapter(ft / "9h" / "other", 901, 1, 3, 200)
    datadir = tmp_path / "data"
    reports, failures = prep.prepare(datadir, ["ll_10min", "ll_1h", "ll_10h"], librilight_root=ll)
    assert failures == []
    counts = {r.name: r.kept for r in reports}
    assert counts == {"ll_10min": 4, "ll_1h": 24, "ll_10h": 30}
    sets = {s: set((datadir / s / "text").read_text().split("\n")) - {""} for s in counts}
    assert sets["ll_10min"] < sets["ll_1h"] < sets["ll_10h"]
    # a missing folder is named before any work
    shutil.rmtree(ft / "9h" / "other")
    with pytest.raises(prep.ConfigError, match=r"(?s)ll_10h.*9h/other \(no such folder"):
        prep.prepare(tmp_path / "data2", ["ll_10h"], librilight_root=ll)
