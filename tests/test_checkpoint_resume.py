"""Crash-safe step checkpoints, resume and failure behaviour (espnet_ext.train, issue 6).

Fast tests exercise ``espnet_ext.train.checkpoint`` and the trainer's pieces in process.
The ``slow`` tests run the real ESPnet trainer (``python -m espnet_ext.bin.ssl_train`` /
``asr_train``, and ``torchrun`` with 2 gloo ranks) on tiny models and a tiny kaldi-ark
corpus written here, and kill them for real: a straight run and a run killed with SIGKILL
then resumed must end with the same parameters.

Faults are injected by a small wrapper script (``_INJECT``) that the test writes next to
the data: it adds an iteration hook (or wraps the checkpoint writer) before handing over
to the entry point, so the kill lands at an exact micro-batch or inside a checkpoint write.
"""

import argparse
import errno
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from espnet_ext.train import checkpoint as ckpt

PYTHON = sys.executable
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------
# Fast tests: the checkpoint files


def _training_state(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    optim = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(5, 8)).pow(2).mean().backward()
    optim.step()
    return {
        "format": ckpt.FORMAT,
        "model": model.state_dict(),
        "optimizers": [optim.state_dict()],
        "rng": [ckpt.capture_rng()],
    }


def _save(directory, epoch, position, seed=0):
    state = dict(_training_state(seed), epoch=epoch, position=position)
    return ckpt.save_step_checkpoint(state, directory, epoch, position)


def test_save_commits_with_manifest_and_loads_back(tmp_path):
    saved = _save(tmp_path, 2, 16)
    assert saved.path.name == "e00002_b000000016.pth"
    manifest = json.loads(saved.manifest_path.read_text())
    assert manifest["bytes"] == saved.path.stat().st_size
    assert manifest["epoch"] == 2 and manifest["position"] == 16
    assert ckpt.verify_step_checkpoint(saved) is None
    state = ckpt.load_step_checkpoint(saved)
    reference = _training_state(0)
    for k, v in reference["model"].items():
        torch.testing.assert_close(state["model"][k], v, rtol=0, atol=0)
    assert state["optimizers"][0]["state"][0]["step"] == 1
    # Nothing but the two committed files.
    assert sorted(p.name for p in tmp_path.iterdir()) == [saved.manifest_path.name, saved.path.name]


def test_torn_truncated_and_corrupt_checkpoints_are_detected(tmp_path):
    good = _save(tmp_path, 1, 2)
    truncated = _save(tmp_path, 1, 4)
    with open(truncated.path, "r+b") as f:
        f.truncate(truncated.path.stat().st_size // 2)
    flipped = _save(tmp_path, 1, 6)
    data = bytearray(flipped.path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    flipped.path.write_bytes(bytes(data))
    torn = _save(tmp_path, 1, 8)
    torn.manifest_path.unlink()  # killed between the rename and the manifest
    assert ckpt.verify_step_checkpoint(good) is None
    assert "truncated" in ckpt.verify_step_checkpoint(truncated)
    assert "corrupt" in ckpt.verify_step_checkpoint(flipped)
    assert "no manifest" in ckpt.verify_step_checkpoint(torn)
    truncated.manifest_path.write_text("{not json")
    assert "unreadable manifest" in ckpt.verify_step_checkpoint(truncated)


def test_resume_point_skips_invalid_newest_with_a_warning(tmp_path, caplog):
    step_dir = tmp_path / ckpt.STEP_DIR
    older = _save(step_dir, 2, 4)
    newest = _save(step_dir, 2, 8)
    with open(newest.path, "r+b") as f:
        f.truncate(100)
    with caplog.at_level(logging.WARNING):
        choice = ckpt.choose_resume_point(tmp_path)
    assert choice.checkpoint == older
    assert [c for c, _ in choice.skipped] == [newest]
    assert any(
        "skipping step checkpoint" in r.message and newest.path.name in r.message for r in caplog.records
    )


def test_resume_point_prefers_the_later_of_epoch_and_step_checkpoints(tmp_path):
    step_dir = tmp_path / ckpt.STEP_DIR
    in_epoch_2 = _save(step_dir, 2, 4)
    epoch_ckpt = tmp_path / "checkpoint.pth"
    # ESPnet's checkpoint.pth after epoch 2: the step checkpoint inside epoch 2 is older.
    torch.save({"model": {}, "reporter": {"epoch": 2, "stats": {}}}, epoch_ckpt)
    choice = ckpt.choose_resume_point(tmp_path)
    assert choice.checkpoint is None and choice.epoch_checkpoint_epoch == 2
    # After epoch 1 only: the step checkpoint is newer.
    torch.save({"model": {}, "reporter": {"epoch": 1, "stats": {}}}, epoch_ckpt)
    assert ckpt.choose_resume_point(tmp_path).checkpoint == in_epoch_2
    # ESPnet killed while rewriting checkpoint.pth in place: fall back to the step checkpoint.
    epoch_ckpt.write_bytes(epoch_ckpt.read_bytes()[:50])
    assert ckpt.choose_resume_point(tmp_path).checkpoint == in_epoch_2
    # ... and with no step checkpoint left, refuse to restart silently from scratch.
    ckpt.remove_step_checkpoint(in_epoch_2)
    with pytest.raises(ckpt.CheckpointError, match="checkpoint.pth is unreadable"):
        ckpt.choose_resume_point(tmp_path)


def _disk_full_after(budget: int):
    """A ``ChecksumWriter.write`` whose file fails with ENOSPC after ``budget`` bytes."""
    left = [budget]

    def write(writer, data):
        left[0] -= len(memoryview(data).cast("B"))
        if left[0] < 0:
            writer.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise writer.error
        return _ORIGINAL_WRITE(writer, data)

    return write


_ORIGINAL_WRITE = ckpt.ChecksumWriter.write


def test_write_failure_keeps_previous_checkpoint_and_leaves_no_partial_file(tmp_path, monkeypatch):
    previous = _save(tmp_path, 1, 2)
    before = previous.path.read_bytes()
    monkeypatch.setattr(ckpt.ChecksumWriter, "write", _disk_full_after(2000))
    with pytest.raises(ckpt.CheckpointWriteError, match="disk full.*No space left"):
        _save(tmp_path, 1, 4)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [previous.manifest_path.name, previous.path.name]
    assert previous.path.read_bytes() == before and ckpt.verify_step_checkpoint(previous) is None


def test_write_failure_in_the_manifest_removes_the_new_checkpoint(tmp_path, monkeypatch):
    previous = _save(tmp_path, 1, 2)
    size = previous.path.stat().st_size
    # Enough for the .pth (same size as the previous one), not for its manifest.
    monkeypatch.setattr(ckpt.ChecksumWriter, "write", _disk_full_after(size + 10))
    with pytest.raises(ckpt.CheckpointWriteError):
        _save(tmp_path, 1, 4)
    monkeypatch.undo()
    assert [c.key for c in ckpt.list_step_checkpoints(tmp_path)] == [(1, 2)]


def test_prune_keeps_the_newest_committed_and_temporaries_are_removed(tmp_path):
    saved = [_save(tmp_path, e, p) for e, p in [(1, 2), (1, 4), (2, 2), (2, 4), (2, 6)]]
    saved[0].manifest_path.unlink()  # an old torn write
    leftover = tmp_path / ".tmp.e00002_b000000008.pth.4242"
    leftover.write_bytes(b"partial")
    removed = ckpt.prune_step_checkpoints(tmp_path, keep=2)
    assert sorted(c.key for c in removed) == [(1, 2), (1, 4), (2, 2)]
    assert [c.key for c in ckpt.list_step_checkpoints(tmp_path)] == [(2, 6), (2, 4)]
    assert ckpt.remove_temporaries(tmp_path) == [leftover] and not leftover.exists()


def test_rng_states_round_trip():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = ckpt.capture_rng()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ckpt.restore_rng(state)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])


def test_sub_reporter_round_trip_gives_the_same_epoch_summary():
    from espnet2.train.reporter import Reporter

    reporter = Reporter()
    reporter.set_epoch(1)
    sub = reporter.start_epoch("train")
    for i in range(5):
        sub.register({"loss": torch.tensor(1.0 + i)}, weight=torch.tensor(2.0 + i))
        if i % 2:
            sub.register({"grad_norm": 0.5 * i})
        sub.next()
    state = ckpt.sub_reporter_state(sub)
    restored = Reporter()
    restored.set_epoch(1)
    sub2 = restored.start_epoch("train")
    ckpt.load_sub_reporter_state(sub2, state)
    assert sub2.count == sub.count == 5
    assert sub2.log_message() == sub.log_message()
    sub2.register({"loss": 1.0}, weight=1.0)  # and it keeps going like the original
    sub2.next()


class _CountingDataset(torch.utils.data.Dataset):
    def __init__(self):
        self.reads = 0

    def __len__(self):
        return 40

    def __getitem__(self, i):
        self.reads += 1
        return torch.tensor([i])


def test_open_from_skips_batches_without_reading_them():
    from espnet_ext.train.hooks import open_from

    batches = [list(range(i, i + 4)) for i in range(0, 40, 4)]
    np.random.RandomState(0).shuffle(batches)
    data = _CountingDataset()
    loader = torch.utils.data.DataLoader(data, batch_sampler=batches)
    rest = [b.flatten().tolist() for b in open_from(loader, 6)]
    assert rest == batches[6:]
    assert data.reads == 4 * 4  # only the 4 remaining batches were loaded
    # Any other iterable: the first items are read and dropped.
    assert list(open_from(iter(range(10)), 7)) == [7, 8, 9]

    class Seekable:
        def set_start_batch(self, k):
            self.k = k

        def __iter__(self):
            return iter(range(self.k, 5))

    assert list(open_from(Seekable(), 3)) == [3, 4]
    with pytest.raises(ckpt.CheckpointError, match="has only 10"):
        open_from(loader, 11)


def test_bad_options_are_rejected():
    from espnet_ext.train.trainer import Trainer, check_options

    parser = argparse.ArgumentParser()
    Trainer.add_arguments(parser)
    defaults = parser.parse_args([])
    assert (defaults.save_every_steps, defaults.save_every_minutes, defaults.keep_step_checkpoints) == (
        None,
        5.0,
        3,
    )
    assert parser.parse_args(["--save_every_steps", "none"]).save_every_steps is None
    for bad in (
        ["--save_every_steps", "0"],
        ["--save_every_minutes", "-1"],
        ["--keep_step_checkpoints", "0"],
        ["--max_nonfinite_steps", "-2"],
        ["--watchdog_minutes", "0"],
        ["--torch_compile", "fast"],
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    # YAML values bypass argparse's types: checked when the options are built.
    for name, value in [
        ("save_every_steps", 0),
        ("save_every_minutes", "5"),
        ("keep_step_checkpoints", None),
        ("max_nonfinite_steps", -1),
        ("watchdog_minutes", 0.0),
        ("torch_compile", "fast"),
    ]:
        options = argparse.Namespace(**vars(defaults), sharded_ddp=False)
        setattr(options, name, value)
        with pytest.raises(ValueError, match=f"--{name}"):
            check_options(options)


def test_watchdog_ends_a_stalled_process_and_names_it():
    code = (
        "import time; from espnet_ext.train.watchdog import ProgressWatchdog\n"
        "w = ProgressWatchdog(0.5, 'rank 3/4', poll=0.1); w.arm('training')\n"
        "for _ in range(5): time.sleep(0.2); w.pet()\n"  # progressing: no exit
        "print('alive', flush=True); time.sleep(60)\n"
    )
    tic = time.monotonic()
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 124, proc.stderr
    assert proc.stdout == "alive\n"
    assert "rank 3/4: no progress in training" in proc.stderr
    assert time.monotonic() - tic < 30


# ---------------------------------------------------------------------------------------
# Real processes: ESPnet's trainer on a tiny corpus

_INJECT = '''
"""Test-only fault injection around an espnet_ext entry point (see the test module)."""
import os, runpy, signal, sys, threading, time

from espnet_ext.train import checkpoint as ckpt
from espnet_ext.train import trainer as T

rank = int(os.environ.get("RANK", "0"))
only = os.environ.get("FAULT_RANK")
active = only is None or int(only) == rank
kill_after = int(os.environ.get("FAULT_KILL_AFTER", "0"))
hang_after = int(os.environ.get("FAULT_HANG_AFTER", "0"))
kill_in_save = int(os.environ.get("FAULT_KILL_IN_SAVE", "0"))
stamp = os.environ.get("FAULT_STAMP")
pause_after = int(os.environ.get("FAULT_PAUSE_AFTER", "0"))  # wait here for a stop signal
count_file = os.environ.get("FAULT_COUNT")  # micro-batches finished, rewritten after each
done = [0]


def _stamp():
    if stamp:
        with open(stamp, "w") as f:
            f.write(repr(time.time()))


class Fault(T.IterationHook):
    def after_batch(self, iiter):
        done[0] += 1
        if active and done[0] == kill_after:
            _stamp()
            os.kill(os.getpid(), signal.SIGKILL)
        if active and done[0] == hang_after:
            _stamp()
            threading.Event().wait()
        if count_file:
            with open(count_file, "w") as f:
                f.write(str(done[0]))
        if active and done[0] == pause_after:
            from espnet_ext.train import signals
            _stamp()
            deadline = time.monotonic() + float(os.environ.get("FAULT_PAUSE_SECONDS", "60"))
            while time.monotonic() < deadline and not T.Trainer._stop.signum:
                time.sleep(0.01)


_build_hooks = T.Trainer.build_hooks.__func__
T.Trainer.build_hooks = classmethod(lambda cls, *a, **k: _build_hooks(cls, *a, **k) + [Fault()])

saves = [0]
_write = ckpt.ChecksumWriter.write


def write(self, data):
    if kill_in_save and self.raw.name.endswith(f".pth.{os.getpid()}"):  # not a manifest
        if self.bytes == 0:
            saves[0] += 1
        if saves[0] == kill_in_save and self.bytes > 0:
            os.kill(os.getpid(), signal.SIGKILL)  # the temporary file is half written
    return _write(self, data)


ckpt.ChecksumWriter.write = write

if kill_after or hang_after:
    # Step checkpoints are written in the background; here each is waited for, so that
    # a kill at micro-batch N finds the same files as with a synchronous writer (a kill
    # inside a background write is FAULT_KILL_IN_SAVE's case).
    from espnet_ext.train import resume as R

    _save = R.RunContext.save

    def save(self, *args, **kwargs):
        _save(self, *args, **kwargs)
        self.flush()

    R.RunContext.save = save

sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
'''

_ENCODER = (
    "encoder: ssl_conformer\n"
    "encoder_conf: {output_size: 32, attention_heads: 2, linear_units: 64, num_blocks: 2,"
    " cnn_module_kernel: 7, subsampling_channels: 8, dropout_rate: 0.1}\n"
)
_COMMON = """
input_size: 80
frontend: null
normalize: null
specaug: null
preencoder: null
batch_type: unsorted
batch_size: 4
accum_grad: 2
max_epoch: 2
num_workers: 0
optim: adamw
optim_conf: {lr: 0.002}
scheduler: warmupcosinelr
scheduler_conf: {warmup_steps: 2, total_steps: 12, min_lr: 1.0e-5}
num_att_plot: 0
log_interval: 1
use_tensorboard: false
use_matplotlib: false
best_model_criterion: [[valid, loss, min]]
"""
_SSL = (
    _COMMON
    + _ENCODER
    + """
loss:
-   name: best_rq
    conf: {codebook_size: 64, codebook_dim: 8, num_codebooks: 1, stack_frames: 4, seed: 0}
util:
-   name: block_mask
    conf: {mask_prob: 0.05, span_ms: 40.0}
use_preprocessor: false
"""
)
_ASR = (
    _COMMON
    + _ENCODER
    + """
decoder: transformer
decoder_conf: {attention_heads: 2, linear_units: 64, num_blocks: 1, dropout_rate: 0.1}
model_conf: {ctc_weight: 0.3, lsm_weight: 0.1}
token_type: char
"""
)
_LETTERS = "abcde"


def _write_set(directory: Path, prefix: str, count: int, rng: np.random.RandomState, nan_every: int = 0):
    directory.mkdir(parents=True)
    shapes, texts = [], []
    with kaldiio.WriteHelper(f"ark,scp:{directory}/feats.ark,{directory}/feats.scp") as writer:
        for i in range(count):
            frames = int(rng.randint(40, 90))
            feats = rng.randn(frames, 80).astype(np.float32)
            if nan_every and i % nan_every == 0:
                feats[frames // 2] = np.nan  # a broken utterance
            utt = f"{prefix}{i:03d}"
            writer[utt] = feats
            shapes.append(f"{utt} {frames},80")
            words = ["".join(rng.choice(list(_LETTERS), rng.randint(2, 5))) for _ in range(rng.randint(1, 4))]
            texts.append(f"{utt} {' '.join(words)}")
    (directory / "feats_shape").write_text("\n".join(shapes) + "\n")
    (directory / "text").write_text("\n".join(texts) + "\n")


def _make_corpus(root: Path, nan_every: int = 0) -> Path:
    rng = np.random.RandomState(0)
    _write_set(root / "train", "tr", 24, rng, nan_every)
    _write_set(root / "valid", "dv", 4, rng)
    (root / "ssl_tokens.txt").write_text("<blank>\n<unk>\n<sos/eos>\n")
    (root / "tokens.txt").write_text(
        "\n".join(["<blank>", "<unk>", "<space>", *_LETTERS, "<sos/eos>"]) + "\n"
    )
    (root / "ssl.yaml").write_text(_SSL)
    (root / "asr.yaml").write_text(_ASR)
    (root / "inject.py").write_text(_INJECT)
    return root


def _args(task: str, data: Path, out: Path, *extra: str):
    sets = []
    for split in ("train", "valid"):
        sets += [f"--{split}_data_path_and_name_and_type", f"{data}/{split}/feats.scp,speech,kaldi_ark"]
        if task == "asr":
            sets += [f"--{split}_data_path_and_name_and_type", f"{data}/{split}/text,text,text"]
        sets += [f"--{split}_shape_file", f"{data}/{split}/feats_shape"]
    tokens = data / ("tokens.txt" if task == "asr" else "ssl_tokens.txt")
    return [
        f"espnet_ext.bin.{task}_train",
        "--config",
        str(data / f"{task}.yaml"),
        "--token_list",
        str(tokens),
        *sets,
        "--output_dir",
        str(out),
        "--resume",
        "true",
        "--seed",
        "3",
        "--save_every_steps",
        "1",
        "--save_every_minutes",
        "none",
        *extra,
    ]


def _env(**faults):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in faults.items()})
    return env


def _train(task, data, out, *extra, faults=None, ranks=1, timeout=900):
    """Run the trainer (through the fault wrapper); returns the CompletedProcess."""
    wrapped = [str(data / "inject.py"), *_args(task, data, out, *extra)]
    if ranks == 1:
        cmd = [PYTHON, *wrapped, "--ngpu", "0"]
    else:
        cmd = [
            TORCHRUN,
            "--standalone",
            f"--nproc_per_node={ranks}",
            "--max_restarts=0",
            *wrapped,
            "--ngpu",
            "0",
            "--multiprocessing_distributed",
            "false",
            "--dist_backend",
            "gloo",
        ]
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        cmd, cwd=REPO, env=_env(**(faults or {})), capture_output=True, text=True, timeout=timeout
    )
    (out.parent / f"{out.name}.{int(time.time() * 1000)}.log").write_text(proc.stdout + proc.stderr)
    return proc


def _ok(proc):
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return proc.stdout + proc.stderr


def _final_params(out: Path, epochs: int = 2):
    return torch.load(out / f"{epochs}epoch.pth", map_location="cpu", weights_only=True)


def _assert_same_params(a: Path, b: Path):
    pa, pb = _final_params(a), _final_params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        torch.testing.assert_close(pa[k], pb[k], msg=lambda m, k=k: f"{k}: {m}")


def _step_model(out: Path, epoch: int, position: int):
    path = ckpt.step_checkpoint_path(out / ckpt.STEP_DIR, epoch, position)
    return ckpt.load_step_checkpoint(ckpt.StepCheckpoint.from_path(path))["model"]


def _assert_moved(out: Path, before):
    """The comparison is not trivial: training went on after the resume point."""
    after = _final_params(out)
    assert any(not torch.equal(before[k], after[k]) for k in after if after[k].is_floating_point())


def _resumed_from(log: str) -> str:
    lines = [line for line in log.splitlines() if "resuming from step checkpoint" in line]
    assert len(lines) == 1, log[-4000:]
    return lines[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def straight_ssl(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ssl") / "straight"
    _ok(_train("ssl", corpus, out))
    return out


@pytest.mark.slow
def test_torch_compile_trains_like_eager(corpus, straight_ssl, tmp_path):
    """``--torch_compile default`` compiles the encoder, the masking util and the BEST-RQ
    loss in place (dynamo's ``eager`` backend here: the graphs are captured whole and run
    by ATen, so no C++ toolchain is needed) and trains to the straight eager run's
    parameters; the checkpoints keep their keys."""
    out = tmp_path / "compiled"
    log = _ok(_train("ssl", corpus, out, "--torch_compile", "default", "--torch_compile_backend", "eager"))
    assert "torch.compile (mode=default, backend=eager): encoder, util_modules.block_mask, losses.0" in log
    _assert_same_params(straight_ssl, out)


@pytest.mark.slow
def test_ssl_killed_and_resumed_matches_the_straight_run(corpus, straight_ssl, tmp_path):
    """SIGKILL after 11 micro-batches (epoch 2, in the middle of an accumulation window):
    the newest step checkpoint is epoch 2 after 4 micro-batches. Resumed twice from the
    same wreck: as left, and with that newest checkpoint truncated, when the one before
    it (epoch 2 after 2) must be used."""
    killed = tmp_path / "killed"
    proc = _train("ssl", corpus, killed, faults={"FAULT_KILL_AFTER": 11})
    assert proc.returncode == -signal.SIGKILL
    assert [c.key for c in ckpt.list_step_checkpoints(killed / ckpt.STEP_DIR)] == [(2, 4), (2, 2), (1, 6)]
    damaged = tmp_path / "damaged"
    shutil.copytree(killed, damaged)
    resume_point = _step_model(killed, 2, 4)

    log = _ok(_train("ssl", corpus, killed))
    assert "e00002_b000000004.pth (epoch 2, 4 micro-batches done)" in _resumed_from(log)
    _assert_same_params(straight_ssl, killed)
    _assert_moved(killed, resume_point)

    newest = damaged / ckpt.STEP_DIR / "e00002_b000000004.pth"
    with open(newest, "r+b") as f:
        f.truncate(newest.stat().st_size - 1000)
    log = _ok(_train("ssl", corpus, damaged))
    assert "skipping step checkpoint" in log and "e00002_b000000004.pth: size" in log
    assert "e00002_b000000002.pth (epoch 2, 2 micro-batches done)" in _resumed_from(log)
    _assert_same_params(straight_ssl, damaged)


@pytest.mark.slow
def test_ssl_killed_inside_a_checkpoint_write_resumes_from_the_previous(corpus, straight_ssl, tmp_path):
    out = tmp_path / "torn"
    # The 2nd save (epoch 1 after 4 micro-batches) dies half written.
    proc = _train("ssl", corpus, out, faults={"FAULT_KILL_IN_SAVE": 2})
    assert proc.returncode == -signal.SIGKILL
    step_dir = out / ckpt.STEP_DIR
    assert [c.key for c in ckpt.list_step_checkpoints(step_dir)] == [(1, 2)]
    assert any(p.name.startswith(".tmp.e00001_b000000004.pth") for p in step_dir.iterdir())
    log = _ok(_train("ssl", corpus, out))
    assert "an interrupted checkpoint write" in log
    assert "e00001_b000000002.pth (epoch 1, 2 micro-batches done)" in _resumed_from(log)
    assert not any(p.name.startswith(".tmp.") for p in step_dir.iterdir())
    _assert_same_params(straight_ssl, out)


@pytest.mark.slow
def test_ddp_rank_death_ends_the_job_and_resume_matches(corpus, tmp_path):
    """2 gloo ranks under torchrun. Rank 1 is SIGKILLed after 9 micro-batches: the job
    exits non-zero soon after, naming rank 1; resuming gives the straight run's result."""
    straight = tmp_path / "ddp_straight"
    _ok(_train("ssl", corpus, straight, ranks=2))
    out = tmp_path / "ddp_killed"
    stamp = tmp_path / "killed_at"
    proc = _train(
        "ssl", corpus, out, ranks=2, faults={"FAULT_KILL_AFTER": 9, "FAULT_RANK": 1, "FAULT_STAMP": stamp}
    )
    ended = time.time()
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    # torchrun's summary names the rank that died first.
    assert re.search(r"Root Cause.*?rank\s*: 1 \(local_rank: 1\)\s*exitcode\s*: -9", log, re.S), log[-3000:]
    assert ended - float(stamp.read_text()) < 60
    assert [c.key for c in ckpt.list_step_checkpoints(out / ckpt.STEP_DIR)][0] == (2, 2)
    log = _ok(_train("ssl", corpus, out, ranks=2))
    assert "e00002_b000000002.pth (epoch 2, 2 micro-batches done)" in _resumed_from(log)
    _assert_same_params(straight, out)


@pytest.mark.slow
def test_ddp_hung_rank_is_ended_by_the_watchdog(corpus, tmp_path):
    """Rank 1 stops making progress (alive, but stuck) after 3 micro-batches; rank 0 then
    waits in a collective that gloo would let hang for 30 min. The watchdog (15 s here)
    ends the job with a message naming the stalled rank."""
    out = tmp_path / "ddp_hung"
    stamp = tmp_path / "hung_at"
    proc = _train(
        "ssl",
        corpus,
        out,
        "--watchdog_minutes",
        "0.25",
        ranks=2,
        faults={"FAULT_HANG_AFTER": 3, "FAULT_RANK": 1, "FAULT_STAMP": stamp},
    )
    ended = time.time()
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "no progress in training for" in log, log[-3000:]
    assert re.search(r"Root Cause.*?rank\s*: [01] \(local_rank: [01]\)\s*exitcode\s*: 124", log, re.S), log[
        -3000:
    ]
    assert "rank 1/2: no progress" in log or "rank 0/2: no progress" in log
    assert ended - float(stamp.read_text()) < 120


@pytest.mark.slow
def test_nonfinite_updates_are_skipped_counted_and_stop_the_run(tmp_path):
    data = _make_corpus(tmp_path / "nan_corpus", nan_every=3)
    out = tmp_path / "nan"
    proc = _train("ssl", data, out, "--max_nonfinite_steps", "2", "--nonfinite_window", "none")
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "update skipped (NaN/inf loss or gradient); 1 skipped in this run (limit 2)" in log
    assert "update skipped (NaN/inf loss or gradient); 2 skipped in this run (limit 2)" in log
    assert "NonFiniteLimitError" in log and "3 optimizer updates in this run were skipped" in log, log[-3000:]


@pytest.mark.slow
def test_disk_full_while_checkpointing_fails_loudly_and_keeps_the_previous(corpus, tmp_path):
    out = tmp_path / "full"
    step_dir = out / ckpt.STEP_DIR
    step_dir.mkdir(parents=True)
    # A real full disk: a tmpfs with room for one checkpoint (~0.6 MiB) only.
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=900k", "tmpfs", str(step_dir)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        proc = _train("ssl", corpus, out)
        log = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert "CheckpointWriteError" in log and "(disk full): [Errno 28] No space left on device" in log, (
            log[-3000:]
        )
        assert "the checkpoints written before are intact (newest step checkpoint:" in log
        assert "e00001_b000000002.pth)" in log
        kept = ckpt.list_step_checkpoints(step_dir)
        assert [c.key for c in kept] == [(1, 2)] and ckpt.verify_step_checkpoint(kept[0]) is None
        assert not any(p.name.startswith(".tmp.") for p in step_dir.iterdir())
        ckpt.load_step_checkpoint(kept[0])
    finally:
        subprocess.run(["umount", str(step_dir)], check=False)


@pytest.fixture(scope="module")
def straight_asr(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("asr") / "straight"
    _ok(_train("asr", corpus, out))
    return out


@pytest.mark.slow
def test_asr_finetuning_killed_and_resumed_matches_the_straight_run(corpus, straight_asr, tmp_path):
    straight = straight_asr
    out = tmp_path / "asr_killed"
    proc = _train("asr", corpus, out, faults={"FAULT_KILL_AFTER": 5})
    assert proc.returncode == -signal.SIGKILL
    resume_point = _step_model(out, 1, 4)
    log = _ok(_train("asr", corpus, out))
    assert "e00001_b000000004.pth (epoch 1, 4 micro-batches done)" in _resumed_from(log)
    _assert_same_params(straight, out)
    _assert_moved(out, resume_point)


@pytest.mark.slow
def test_use_amp_on_cpu_trains_under_bf16_autocast(corpus, straight_asr, tmp_path):
    """ESPnet autocasts only CUDA; with --ngpu 0 our trainer runs the forward in bf16."""
    out = tmp_path / "asr_bf16"
    log = _ok(_train("asr", corpus, out, "--use_amp", "true"))
    assert "CPU bf16 autocast" in log
    bf16, fp32 = _final_params(out), _final_params(straight_asr)
    assert bf16.keys() == fp32.keys()
    assert all(
        v.dtype == fp32[k].dtype and bool(torch.isfinite(v).all())
        for k, v in bf16.items()
        if v.is_floating_point()
    )
    # Same seed and data: a float32 run is bit-reproducible, so a difference is bf16 rounding.
    assert any(not torch.equal(v, fp32[k]) for k, v in bf16.items() if v.is_floating_point())
    # ... and rounding only: the two trainings stay close.
    diff = max(float((v - fp32[k]).abs().max()) for k, v in bf16.items() if v.is_floating_point())
    assert diff < 0.05, diff


def test_cpu_autocast_wrapper_runs_matmuls_in_bf16_and_keeps_float32_parameters():
    from espnet_ext.train.hooks import CpuAutocast

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(8, 4)

        def forward(self, x):
            y = self.linear(x)
            return y.float().sum(), y.dtype

    net = Net()
    wrapped = CpuAutocast(net)
    assert list(wrapped.parameters()) == list(net.parameters()) and wrapped.module is net
    loss, dtype = wrapped(x=torch.randn(3, 8))
    assert dtype == torch.bfloat16
    loss.backward()
    assert net.linear.weight.dtype == net.linear.weight.grad.dtype == torch.float32
    assert net(torch.randn(3, 8))[1] == torch.float32  # outside the wrapper: float32


_SHARDED = """
iterator_type: sharded
valid_iterator_type: sharded
batch_type: sorted
num_workers: 1
"""


@pytest.mark.slow
def test_ssl_on_the_sharded_iterator_killed_and_resumed_matches(tmp_path):
    """The pre-training data path (--iterator_type sharded) seeks with set_start_batch:
    same parity, and the skipped batches are never loaded."""
    import soundfile

    from espnet_ext.features import extract as extract_feats

    rng = np.random.RandomState(1)
    data = tmp_path / "data"
    (data / "wav").mkdir(parents=True)
    lines = []
    for i in range(32):
        seconds = rng.uniform(0.4, 0.9)
        t = np.arange(int(16000 * seconds)) / 16000
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 900) * t) + 0.05 * rng.randn(t.size)
        path = data / "wav" / f"u{i:03d}.flac"
        soundfile.write(path, wave.astype(np.float32), 16000, subtype="PCM_16")
        lines.append(f"u{i:03d} {path}\n")
    (data / "wav.scp").write_text("".join(lines))
    dump = tmp_path / "dump"
    assert extract_feats.run(str(data), str(dump), nj=1, chunk_size=8, progress=False)["written"] == 32
    corpus = _make_corpus(tmp_path / "corpus")
    (corpus / "ssl.yaml").write_text(_SSL.replace("batch_type: unsorted\n", "") + _SHARDED)
    for split in ("train", "valid"):  # the sharded factory reads dump/shards.tsv next to feats.scp
        shutil.rmtree(corpus / split)
        (corpus / split).symlink_to(dump)

    straight = tmp_path / "straight"
    _ok(_train("ssl", corpus, straight))
    out = tmp_path / "killed"
    proc = _train("ssl", corpus, out, faults={"FAULT_KILL_AFTER": 11})
    assert proc.returncode == -signal.SIGKILL
    log = _ok(_train("ssl", corpus, out))
    assert "e00002_b000000002.pth (epoch 2, 2 micro-batches done)" in _resumed_from(log)
    _assert_same_params(straight, out)


# ---------------------------------------------------------------------------------------
# Pre-emption: a stop signal, a step checkpoint at the next update boundary, exit 75


def _signalled_run(task, data, out, sig, *extra, after=9):
    """Start a training in its own session; after ``after`` micro-batches (the trainer waits
    there), send ``sig`` to its whole process group as SLURM does to a job step. Returns
    (CompletedProcess-like, seconds from the signal to the exit, micro-batches finished)."""
    stamp, count = out.parent / f"{out.name}.stamp", out.parent / f"{out.name}.count"
    out.mkdir(parents=True, exist_ok=True)
    cmd = [PYTHON, str(data / "inject.py"), *_args(task, data, out, *extra), "--ngpu", "0"]
    env = _env(FAULT_PAUSE_AFTER=after, FAULT_STAMP=stamp, FAULT_COUNT=count)
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    while not stamp.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stamp.exists(), proc.communicate()[0][-4000:]
    signalled = time.monotonic()
    os.killpg(proc.pid, sig)
    log, _ = proc.communicate(timeout=600)
    seconds = time.monotonic() - signalled
    (out.parent / f"{out.name}.{int(time.time() * 1000)}.log").write_text(log)
    return subprocess.CompletedProcess(cmd, proc.returncode, log, ""), seconds, int(count.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM], ids=["SIGUSR1", "SIGTERM"])
def test_sigusr1_saves_and_exits_for_requeue(corpus, straight_ssl, tmp_path, sig):
    """The signal comes after 9 micro-batches (epoch 2, micro-batch 3: in the middle of an
    accumulation window; no periodic checkpoints). The update in flight is finished, the
    step checkpoint of its boundary (epoch 2 after 4) is written, and the process exits 75.
    Resumed, it ends with the straight run's parameters."""
    from espnet_ext.distributed.exit_codes import REQUEUE

    out = tmp_path / "preempted"
    proc, seconds, finished = _signalled_run(
        "ssl", corpus, out, sig, "--save_every_steps", "none", "--num_workers", "1"
    )
    log = proc.stdout
    assert proc.returncode == REQUEUE, log[-6000:]
    assert f"stopping for requeue after update 2 of epoch 2 (4 micro-batches) (signal {sig.name})" in log
    kept = ckpt.list_step_checkpoints(out / ckpt.STEP_DIR)
    assert [c.key for c in kept] == [(2, 4)]  # the forced one only
    assert ckpt.verify_step_checkpoint(kept[0]) is None
    # No completed update lost: the process finished exactly the micro-batches it saved.
    assert finished == 6 + 4
    assert seconds < 60, seconds
    print(
        f"\n{sig.name}: exit {proc.returncode} {seconds:.2f} s after the signal; "
        f"{finished} micro-batches finished, checkpoint at {kept[0].key}, 0 updates lost"
    )
    resume_point = _step_model(out, 2, 4)
    log = _ok(_train("ssl", corpus, out, "--save_every_steps", "none", "--num_workers", "1"))
    assert "e00002_b000000004.pth (epoch 2, 4 micro-batches done)" in _resumed_from(log)
    _assert_same_params(straight_ssl, out)
    _assert_moved(out, resume_point)
