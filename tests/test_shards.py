"""Tests for the sharded data path: stage-2 shards, the epoch plan, the iterator
factory, resume, bad shards, and a real ESPnet SSL training run through it.

The audio is real (espeak-ng speech written as FLAC, cut into 120 segments of
0.3-3 s), the features are written by the real stage 2 into real kaldi arks, batches
are collated by ESPnet's CommonCollateFn.
"""

import collections
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
from espnet2.train.collate_fn import CommonCollateFn

from espnet_ext.bin import shards as shards_cli
from espnet_ext.features import extract as X
from espnet_ext.shards import format as S
from espnet_ext.shards import plan as P
from espnet_ext.shards.iterator import ShardedIterFactory

REPO = Path(__file__).resolve().parents[1]
N_UTTS = 120
CHUNK = 16  # -> 8 shards, the last one with 8 utterances


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng (the audio is synthesized)")
    root = tmp_path_factory.mktemp("shards")
    waves = []
    for i, text in enumerate(
        [
            "The quick brown fox jumps over the lazy dog near the river bank today.",
            "Speech recognition turns sound into words, one frame at a time.",
        ]
    ):
        raw = root / f"raw{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
        wave, rate = soundfile.read(raw, dtype="float32")
        waves.append(soxr.resample(wave, rate, 16000).astype(np.float32))
    recording = np.concatenate(waves + waves[::-1])
    soundfile.write(root / "rec.flac", recording, 16000, subtype="PCM_16")
    seconds = recording.size / 16000
    data = root / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"rec {root / 'rec.flac'}\n")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(N_UTTS):
        dur = rng.uniform(0.3, 3.0)
        start = rng.uniform(0, seconds - dur)
        lines.append(f"utt{i:03d} rec {start:.2f} {start + dur:.2f}\n")
    (data / "segments").write_text("".join(lines))
    out = root / "dump"
    result = X.run(str(data), str(out), nj=1, chunk_size=CHUNK, progress=False)
    assert result["written"] == N_UTTS
    return out


@pytest.fixture(scope="module")
def reference(dump):
    return {k: np.array(v) for k, v in kaldiio.load_scp(str(dump / "feats.scp")).items()}


def _factory(dump, **kw):
    kw.setdefault("rule", P.BatchRule("count", 4))
    kw.setdefault("window", 20)
    return ShardedIterFactory(str(dump / "feats.scp"), collate_fn=CommonCollateFn(), **kw)


def _ids(iterator):
    return [tuple(ids) for ids, _ in iterator]


# ---------------------------------------------------------------------------
# Stage 2 writes the shards
# ---------------------------------------------------------------------------


def test_stage2_writes_shards_matching_scp(dump, reference):
    manifest = S.ShardManifest.load(str(dump))
    assert manifest.n_shards == 8 and manifest.n_utts == N_UTTS
    assert manifest.feat_dim == 80 and list(manifest.utts) == [16] * 7 + [8]
    scp = dict(line.split() for line in (dump / "feats.scp").read_text().splitlines())
    shape = dict(line.split() for line in (dump / "feats_shape").read_text().splitlines())
    listed = []
    fds = {}
    for row in range(manifest.n_shards):
        index = manifest.read_index(row)
        assert manifest.row(row).max_frames == int(index.frames.max())
        for utt, off, t in zip(index.utts, index.offsets, index.frames):
            assert scp[utt] == f"{manifest.ark_path(row)}:{off}"
            assert shape[utt] == f"{t},80"
            np.testing.assert_array_equal(manifest.load_matrix(row, utt, off, t, fds), reference[utt])
        listed += index.utts
    for fd in fds.values():
        fd.close()
    assert listed == sorted(reference)
    assert S.verify(str(dump)) == []
    assert shards_cli.main(["verify", str(dump)]) == 0


def test_stage2_resume_rewrites_a_missing_index(dump, tmp_path, caplog):
    copy = tmp_path / "dump"
    shutil.copytree(dump, copy)
    data = dump.parent / "data"
    manifest = (dump / "shards.tsv").read_text()
    (copy / "data" / "00000" / "feats.3.idx").unlink()
    (copy / ".done").unlink()
    # the chunk paths recorded in the copy's scp point to the original dump: rewrite
    with caplog.at_level("INFO"):
        X.run(str(data), str(copy), nj=1, chunk_size=CHUNK, progress=False)
    assert "7 chunks already done, 1 to do" in caplog.text
    assert (copy / "shards.tsv").read_text() == manifest
    assert S.verify(str(copy)) == []


def test_chunks_without_utterances_are_not_shards(dump, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"rec {dump.parent / 'rec.flac'}\n")
    # the middle chunk's only utterance starts past the end of the recording: rejected
    (data / "segments").write_text("a rec 0.0 1.0\nb rec 99.0 100.0\nc rec 1.0 2.5\n")
    out = tmp_path / "dump"
    X.run(str(data), str(out), nj=1, chunk_size=1, progress=False)
    manifest = S.ShardManifest.load(str(out))
    assert manifest.table[:, 0].tolist() == [0, 2] and manifest.n_utts == 2
    assert manifest.ark_path(1).name == "feats.2.ark"
    factory = ShardedIterFactory(str(out), rule=P.BatchRule("count", 1), collate_fn=CommonCollateFn())
    assert sorted(u for ids in _ids(factory.build_iter(1)) for u in ids) == ["a", "c"]


# ---------------------------------------------------------------------------
# The plan: exactly once, equal steps, order
# ---------------------------------------------------------------------------


def test_shards_go_into_subdirectories(dump, reference, tmp_path, monkeypatch):
    """Issue 13: shard k's files go to ``data/<k // SHARDS_PER_DIR>/`` (3 a directory here,
    500 in the recipe), a re-run resumes there, and a manifest of the flat layout still reads."""
    monkeypatch.setattr(S, "SHARDS_PER_DIR", 3)
    out = tmp_path / "dump"
    X.run(str(dump.parent / "data"), str(out), nj=1, chunk_size=CHUNK, progress=False)
    dirs = sorted(p.name for p in (out / "data").iterdir())
    assert dirs == ["00000", "00001", "00002"]  # 8 shards, 3 a directory
    counts = {d: len(list((out / "data" / d).iterdir())) for d in dirs}
    assert counts == {"00000": 12, "00001": 12, "00002": 8}, counts  # ark, scp, idx, done per shard
    manifest = S.ShardManifest.load(str(out))
    assert manifest.ark_path(4) == out / "data" / "00001" / "feats.4.ark"
    assert S.verify(str(out)) == []
    got = {k: np.array(v) for k, v in kaldiio.load_scp(str(out / "feats.scp")).items()}
    assert got.keys() == reference.keys()
    for k, v in got.items():
        np.testing.assert_array_equal(v, reference[k])
    assert sorted(u for ids in _ids(_factory(out).build_iter(1)) for u in ids) == sorted(reference)
    # a manifest whose patterns have no {dir} (the flat layout) resolves as before
    flat = S.ShardManifest.load(str(dump))
    flat.ark_pattern = "data/feats.{shard}.ark"
    assert flat.ark_path(2) == dump / "data" / "feats.2.ark"


def test_data_plan_keeps_directories_small_at_600k_hours():
    from espnet_ext.distributed.data_plan import data_plan, plan_lines

    plan = data_plan(600_000, 1000)
    assert plan.shards == 144_000 and plan.directories == 288
    assert plan.files_per_directory == 2_000
    text = "\n".join(plan_lines(plan))
    assert "288 directories" in text and "at most 2,000 files per directory" in text


@pytest.mark.parametrize("rule", [P.BatchRule("count", 4), P.BatchRule("bins", 1500)])
@pytest.mark.parametrize("world,streams", [(1, 1), (2, 2), (3, 1), (4, 3)])
def test_every_utterance_once_per_pass_and_equal_steps(dump, reference, rule, world, streams):
    seen = collections.Counter()
    steps = []
    for rank in range(world):
        factory = _factory(dump, rule=rule, rank=rank, world_size=world, streams_per_rank=streams)
        n = 0
        for ids, batch in factory.build_iter(1):
            n += 1
            seen.update(ids)
            assert batch["speech"].shape[0] == len(ids)
            for i, utt in enumerate(ids):
                t = int(batch["speech_lengths"][i])
                assert t == reference[utt].shape[0]
                np.testing.assert_array_equal(batch["speech"][i, :t].numpy(), reference[utt])
                assert not batch["speech"][i, t:].any()
        steps.append(n)
    assert sorted(seen) == sorted(reference) and set(seen.values()) == {1}
    assert len(set(steps)) == 1, steps
    assert steps[0] == factory.layout.batches_per_rank == len(factory.build_iter(1))


def test_batch_sizes_follow_the_rule(dump):
    factory = _factory(dump, rule=P.BatchRule("count", 4), window=4096)
    sizes = [len(ids) for ids in _ids(factory.build_iter(1))]
    assert len(sizes) == 30 and set(sizes) == {4}
    # a frame budget: short utterances in big batches, long ones in small batches
    factory = _factory(dump, rule=P.BatchRule("bins", 1500), window=4096)
    batches = [b["speech"].shape for _, b in factory.build_iter(1)]
    padded = [n * t for n, t, _ in batches]
    assert len(batches) == factory.layout.batches_per_rank == 15  # ceil(21k frames / 1500)
    assert max(padded) <= 1.35 * 1500 and min(n for n, _, _ in batches) < max(n for n, _, _ in batches)


def test_order_is_fixed_by_seed_and_pass_not_by_workers(dump):
    base = _ids(_factory(dump, streams_per_rank=2).build_iter(1))
    assert base == _ids(_factory(dump, streams_per_rank=2).build_iter(1))
    assert base != _ids(_factory(dump, streams_per_rank=2).build_iter(2))
    assert base != _ids(_factory(dump, streams_per_rank=2, seed=1).build_iter(1))
    assert base == _ids(_factory(dump, streams_per_rank=2, num_workers=2).build_iter(1))
    assert base == _ids(_factory(dump, streams_per_rank=2, num_workers=1).build_iter(1))
    # validation: no shuffling, natural shard order
    valid = _ids(_factory(dump, shuffle=False, window=16).build_iter(3))
    assert valid == _ids(_factory(dump, shuffle=False, window=16).build_iter(1))
    assert sorted(u for ids in valid[:4] for u in ids) == [f"utt{i:03d}" for i in range(16)]


def test_resume_mid_epoch_continues_the_same_order(dump):
    factory = _factory(dump, streams_per_rank=2, num_workers=2)
    full = _ids(factory.build_iter(1))
    for k in (0, 1, 7, len(full) - 1, len(full)):
        epoch = _factory(dump, streams_per_rank=2, num_workers=2).build_iter(1)
        epoch.set_start_batch(k)
        assert len(epoch) == len(full)  # the epoch's size, as for a DataLoader
        assert _ids(epoch) == full[k:]
    with pytest.raises(ValueError, match="outside"):
        factory.build_iter(1).set_start_batch(len(full) + 1)


def test_num_iters_per_epoch_walks_through_passes(dump):
    passes = [u for p in (1, 2, 3) for u in _ids(_factory(dump, rank=1, world_size=2).build_iter(p))]
    per_pass = len(passes) // 3  # 15 batches per rank and pass
    factory = _factory(dump, rank=1, world_size=2, num_iters_per_epoch=7)
    chained = [u for e in range(1, 7) for u in _ids(factory.build_iter(e))]
    assert chained == passes[: 6 * 7]
    assert factory.segments(3) == [(1, 14, 15), (2, 0, 6)]
    assert factory.segments(5) == [(2, 13, 15), (3, 0, 5)]
    # resume inside the epoch that crosses from pass 2 to pass 3
    epoch = _factory(dump, rank=1, world_size=2, num_iters_per_epoch=7).build_iter(5)
    epoch.set_start_batch(3)
    assert _ids(epoch) == passes[4 * 7 + 3 : 5 * 7]
    assert per_pass == 15


# ---------------------------------------------------------------------------
# Bucketing
# ---------------------------------------------------------------------------


def _best_minmax(lengths, k):
    """Brute force: min over contiguous k-partitions of the max group size x longest."""
    n = len(lengths)
    best = {(0, 0): 0}
    for g in range(1, k + 1):
        for j in range(1, n + 1):
            cands = [max(best[(i, g - 1)], (j - i) * lengths[j - 1]) for i in range(j) if (i, g - 1) in best]
            if cands:
                best[(j, g)] = min(cands)
    return best[(n, k)]


def test_frame_partition_is_optimal_and_exact():
    rng = np.random.default_rng(3)
    for _ in range(40):
        n = int(rng.integers(1, 14))
        k = int(rng.integers(1, n + 1))
        lengths = np.sort(rng.integers(20, 400, n))
        groups = P._split_frames(lengths, k)
        assert len(groups) == k and groups[0][0] == 0 and groups[-1][1] == n
        assert all(a < b for a, b in groups) and all(g[1] == h[0] for g, h in zip(groups, groups[1:]))
        worst = max((b - a) * int(lengths[b - 1]) for a, b in groups)
        assert worst == _best_minmax([int(x) for x in lengths], k)


def test_bucketing_keeps_padding_low(dump):
    manifest = S.ShardManifest.load(str(dump))
    frames = np.concatenate([manifest.read_index(r).frames for r in range(manifest.n_shards)])
    ours = [b["speech_lengths"].numpy() for _, b in _factory(dump, window=64).build_iter(1)]
    shuffled = np.random.default_rng(0).permutation(frames)
    random_batches = [shuffled[i : i + 4] for i in range(0, len(frames), 4)]
    assert P.padding_fraction(ours) < 0.1 < P.padding_fraction(random_batches)
    assert P.padding_fraction([np.array([5, 5]), np.array([3, 1])]) == pytest.approx(1 - 14 / 16)


# ---------------------------------------------------------------------------
# Bad shards and bad configuration
# ---------------------------------------------------------------------------


@pytest.fixture
def broken(dump, tmp_path):
    copy = tmp_path / "dump"
    shutil.copytree(dump, copy)
    return copy


def _first_batch(path, **kw):
    factory = ShardedIterFactory(
        str(path), rule=P.BatchRule("count", 4), window=20, collate_fn=CommonCollateFn(), **kw
    )
    return next(iter(factory.build_iter(1)))


def test_missing_or_truncated_ark_is_named_before_training(broken):
    (broken / "data" / "00000" / "feats.3.ark").unlink()
    with pytest.raises(S.ShardError, match=r"shard 3 \(.*feats.3.ark\): ark missing"):
        _first_batch(broken)
    (broken / "data" / "00000" / "feats.3.ark").write_bytes(b"")
    with pytest.raises(S.ShardError, match=r"shard 3 .*: ark has 0 bytes, the manifest says \d+"):
        _first_batch(broken)
    assert any("shard 3" in p for p in S.verify(str(broken), content=False))
    # only the ranks that read shard 3 (manifest row 3) this pass stop on it
    outcomes = set()
    for rank in range(4):
        reads = 3 in _factory(broken, rank=rank, world_size=4).rank_rows(1, True)
        if reads:
            with pytest.raises(S.ShardError, match="shard 3"):
                _first_batch(broken, rank=rank, world_size=4)
        else:
            ids, batch = _first_batch(broken, rank=rank, world_size=4)
            assert len(ids) == batch["speech"].shape[0] >= 1
        outcomes.add(reads)
    assert outcomes == {True, False}


def test_altered_index_and_corrupt_ark_are_named(broken):
    idx = broken / "data" / "00000" / "feats.2.idx"
    idx.write_text(idx.read_text().replace("\t1", "\t2", 1))
    factory = ShardedIterFactory(
        str(broken), rule=P.BatchRule("count", 4), window=20, collate_fn=CommonCollateFn(), num_workers=1
    )
    with pytest.raises(S.ShardError, match=r"shard 2 .*CRC-32"):
        list(factory.build_iter(1))  # raised in a DataLoader worker, re-raised here
    # same size, garbage inside: found when read, and by verify
    ark = broken / "data" / "00000" / "feats.6.ark"
    data = bytearray(ark.read_bytes())
    data[: len(data) // 2] = bytes(len(data) // 2)
    ark.write_bytes(bytes(data))
    problems = S.verify(str(broken))
    assert any("shard 2" in p and "CRC-32" in p for p in problems)
    assert any("shard 6" in p and "ark CRC-32 differs" in p for p in problems)
    assert shards_cli.main(["verify", str(broken)]) == 1
    manifest = S.ShardManifest.load(str(broken))
    index = manifest.read_index(6)
    with pytest.raises(S.ShardError, match=r"shard 6 .*cannot read 'utt\d+' at offset"):
        manifest.load_matrix(6, index.utts[0], index.offsets[0], index.frames[0], {})


def test_bad_manifest_is_named(dump, broken, tmp_path):
    with pytest.raises(S.ManifestError, match=r"no shard manifest .*nowhere.*re-run"):
        S.ShardManifest.load(str(tmp_path / "nowhere" / "feats.scp"))
    path = broken / "shards.tsv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(S.ManifestError, match="header says shards=8, the rows add up to 7"):
        S.ShardManifest.load(str(broken))
    path.write_text("\n".join(lines[:3] + ["4 x 1 2 3 4 5"] + lines[4:]) + "\n")
    with pytest.raises(S.ManifestError, match=r"shards.tsv:4: malformed shard row"):
        S.ShardManifest.load(str(broken))
    path.write_text("\n".join(lines[:3] + ["1\t16\t5"] + lines[4:]) + "\n")
    with pytest.raises(S.ManifestError, match=r"shards.tsv:4: malformed shard row '1\\t16\\t5'"):
        S.ShardManifest.load(str(broken))
    # a hand-edited manifest (spaces, blank lines) reads the same as the written one
    path.write_text("\n".join(lines[:2] + [" ".join(x.split()) for x in lines[2:]] + [""]) + "\n\n")
    assert np.array_equal(S.ShardManifest.load(str(broken)).table, S.ShardManifest.load(str(dump)).table)


def test_bad_configuration_fails_before_reading(dump):
    with pytest.raises(P.PlanError, match="must divide --shard_streams_per_rank"):
        _factory(dump, streams_per_rank=2, num_workers=3)
    with pytest.raises(P.PlanError, match="120 utterances cannot feed 100 ranks x 2 streams"):
        _factory(dump, rank=0, world_size=100, streams_per_rank=2)
    with pytest.raises(P.PlanError, match=r"--seed must be >= 0.*--shard_window must be >= 1"):
        _factory(dump, seed=-1, window=0)
    with pytest.raises(P.PlanError, match="batch size per rank"):
        P.BatchRule("count", 0)


# ---------------------------------------------------------------------------
# The real trainer
# ---------------------------------------------------------------------------

CONFIG = """\
input_size: 80
normalize: null
preencoder: null
use_preprocessor: false
encoder: ssl_conformer
encoder_conf:
    output_size: 32
    attention_heads: 2
    linear_units: 64
    num_blocks: 1
    cnn_module_kernel: 7
loss:
-   name: best_rq
    conf:
        codebook_size: 64
        codebook_dim: 8
util:
-   name: block_mask
    conf:
        mask_prob: 0.05
        span_ms: 100
iterator_type: sharded
valid_iterator_type: sharded
batch_type: sorted
batch_size: 8
num_workers: 2
shard_window: 32
optim: adamw
optim_conf:
    lr: 1.0e-3
max_epoch: 1
num_iters_per_epoch: 3
num_att_plot: 0
log_interval: 1
best_model_criterion:
-   - valid
    - loss
    - min
"""


@pytest.mark.slow
def test_espnet_ssl_trainer_runs_through_the_sharded_path(dump, tmp_path):
    (tmp_path / "conf.yaml").write_text(CONFIG)
    (tmp_path / "tokens.txt").write_text("<blank>\n<unk>\n<sos/eos>\n")
    # stage 4's arguments; the shape files are passed as the recipe does but not read
    cmd = [
        sys.executable,
        "-m",
        "espnet_ext.bin.ssl_train",
        "--config",
        str(tmp_path / "conf.yaml"),
        "--ngpu",
        "0",
        "--token_list",
        str(tmp_path / "tokens.txt"),
        "--train_data_path_and_name_and_type",
        f"{dump}/feats.scp,speech,kaldi_ark",
        "--train_shape_file",
        str(tmp_path / "absent_shape"),
        "--valid_data_path_and_name_and_type",
        f"{dump}/feats.scp,speech,kaldi_ark",
        "--valid_shape_file",
        str(tmp_path / "absent_shape"),
        "--output_dir",
        str(tmp_path / "exp"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "sharded iterator:" in log and "3 per epoch" in log
    assert "2 streams x 8 batches = 16 batches per pass" in log  # 120 utts / 8 per batch
    assert "1epoch results" in log and "bestrq_loss=" in log
    assert (tmp_path / "exp" / "checkpoint.pth").is_file()
    assert (tmp_path / "exp" / "valid.loss.best.pth").exists()


def test_verify_cli_takes_paths_after_quick(tmp_path, capsys):
    """Stage 4 calls `python -m espnet_ext.bin.shards verify --quick DIR DIR`: the paths come
    after the flag (parsed, then each checked: a missing manifest is a problem, exit 1)."""
    from espnet_ext.bin import shards as cli

    assert cli.main(["verify", "--quick", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "a") in err and str(tmp_path / "b") in err
