"""Background step-checkpoint writes and memory-mapped resume (issue 12, item 5).

In process: the snapshot (a copy, buffers reused, the GPU decision), the writer (a
committed, valid file; errors surface in the caller; one write in flight), the resume
(memory-mapped, the file unmapped once restored). In subprocesses: a SIGKILL in the
middle of a background write leaves the previous checkpoint the one to resume from; the
watchdog ends a stuck save but not a slow one that progresses.
"""

import collections
import errno
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest
import torch

from espnet_ext.train import async_writer as aw
from espnet_ext.train import checkpoint as ckpt
from espnet_ext.train import resume as R

PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[1]


def _model_and_optim(seed=0, width=16):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.Tanh(), torch.nn.Linear(width, 4))
    optim = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(5, 8)).pow(2).mean().backward()
    optim.step()
    return model, optim


def _state(model, optim, epoch=1, position=2):
    return {
        "format": ckpt.FORMAT,
        "epoch": epoch,
        "position": position,
        "model": model.state_dict(),
        "optimizers": [optim.state_dict()],
        "rng": [ckpt.capture_rng()],
    }


def test_copy_strategy_pins_and_overlaps_only_cuda_tensors():
    assert aw.copy_strategy("cuda", pin_memory=True) == aw.PINNED_ASYNC
    assert aw.copy_strategy("cuda", pin_memory=False) == aw.COPY
    assert aw.copy_strategy("cpu", pin_memory=True) == aw.COPY
    assert aw.copy_strategy("cpu", pin_memory=False) == aw.COPY


def test_snapshot_is_a_copy_keeps_metadata_and_reuses_its_buffers():
    model, optim = _model_and_optim()
    snap = aw.HostSnapshot(pin_memory=False)
    state = _state(model, optim)
    state["tied"] = [state["model"]["0.weight"], state["model"]["0.weight"]]
    first = snap.take(state)
    assert isinstance(first["model"], collections.OrderedDict)
    assert first["model"]._metadata == state["model"]._metadata
    assert first["tied"][0] is first["tied"][1]  # one copy of a tensor seen twice
    assert snap.allocated == snap.bytes > 0
    ptrs = {k: v.data_ptr() for k, v in first["model"].items()}
    saved = {k: v.clone() for k, v in first["model"].items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # training goes on: the snapshot does not move
    for k, v in first["model"].items():
        assert torch.equal(v, saved[k]) and v.data_ptr() != state["model"][k].data_ptr()
    second = snap.take(_state(model, optim))
    assert snap.allocated == 0  # every buffer reused
    assert {k: v.data_ptr() for k, v in second["model"].items()} == ptrs
    torch.testing.assert_close(second["model"]["0.weight"], model[0].weight.detach(), rtol=0, atol=0)


def test_background_write_completes_is_valid_and_prunes(tmp_path):
    model, optim = _model_and_optim()
    writer = aw.AsyncCheckpointWriter(tmp_path, keep=2, pin_memory=False)
    for position in (2, 4, 6):
        timing = writer.submit(_state(model, optim, 1, position), 1, position)
        assert timing["blocked_s"] >= timing["snapshot_s"] >= 0
    result = writer.wait()
    assert result["checkpoint"].key == (1, 6) and writer.writes == 3
    kept = ckpt.list_step_checkpoints(tmp_path)
    assert [c.key for c in kept] == [(1, 6), (1, 4)]
    assert all(ckpt.verify_step_checkpoint(c) is None for c in kept)
    loaded = ckpt.load_step_checkpoint(kept[0])
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded["model"][k], v, rtol=0, atol=0)
    assert not any(p.name.startswith(".tmp.") for p in tmp_path.iterdir())


def _gated_write(gate: threading.Event, started: threading.Event):
    original = ckpt.ChecksumWriter.write

    def write(self, data):
        started.set()
        gate.wait()
        return original(self, data)

    return write


def test_a_save_due_during_a_write_waits_for_it(tmp_path, monkeypatch):
    model, optim = _model_and_optim()
    writer = aw.AsyncCheckpointWriter(tmp_path, keep=3, pin_memory=False)
    gate, started = threading.Event(), threading.Event()
    monkeypatch.setattr(ckpt.ChecksumWriter, "write", _gated_write(gate, started))
    writer.submit(_state(model, optim, 1, 2), 1, 2)
    assert started.wait(10) and writer.busy
    threading.Timer(0.5, gate.set).start()
    timing = writer.submit(_state(model, optim, 1, 4), 1, 4)  # waits for (1, 2)
    assert writer.waits == 1 and timing["waited_s"] >= 0.3
    assert timing["previous"]["checkpoint"].key == (1, 2)
    assert writer.wait()["checkpoint"].key == (1, 4)
    assert [ckpt.verify_step_checkpoint(c) for c in ckpt.list_step_checkpoints(tmp_path)] == [None, None]


def test_a_writer_error_surfaces_in_the_training_thread(tmp_path, monkeypatch):
    model, optim = _model_and_optim()
    writer = aw.AsyncCheckpointWriter(tmp_path, keep=3, pin_memory=False)
    writer.submit(_state(model, optim, 1, 2), 1, 2)
    writer.wait()
    before = (tmp_path / "e00001_b000000002.pth").read_bytes()

    def full(self, data):
        self.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        raise self.error

    monkeypatch.setattr(ckpt.ChecksumWriter, "write", full)
    writer.submit(_state(model, optim, 1, 4), 1, 4)  # returns: the write fails later
    with pytest.raises(ckpt.CheckpointWriteError, match="disk full"):
        writer.wait()
    writer.wait()  # reported once
    # ... or at the next save, which then writes nothing.
    writer.submit(_state(model, optim, 1, 6), 1, 6)
    while writer.busy:
        time.sleep(0.01)
    with pytest.raises(ckpt.CheckpointWriteError):
        writer.submit(_state(model, optim, 1, 8), 1, 8)
    assert not writer.busy
    monkeypatch.undo()
    assert [c.key for c in ckpt.list_step_checkpoints(tmp_path)] == [(1, 2)]
    assert (tmp_path / "e00001_b000000002.pth").read_bytes() == before
    assert not any(p.name.startswith(".tmp.") for p in tmp_path.iterdir())


def _options(out: Path, **kw):
    base = dict(
        output_dir=str(out),
        ngpu=0,
        keep_step_checkpoints=3,
        watchdog_minutes=None,
        accum_grad=1,
        save_every_steps=None,
        save_every_minutes=None,
        max_nonfinite_steps=None,
        no_forward_run=False,
    )
    base.update(kw)
    return types.SimpleNamespace(**base)


_SINGLE = types.SimpleNamespace(distributed=False, dist_rank=0, dist_world_size=1)


class _SubReporter:
    count = total_count = 0
    stats = {}


def test_resume_maps_the_file_and_releases_it_once_restored(tmp_path):
    model, optim = _model_and_optim(seed=1, width=4096)  # ~0.6 MiB per tensor: whole pages
    context = R.RunContext(model, [optim], [None], _options(tmp_path), _SINGLE)
    context.save(1, 2, _SubReporter(), None, {"before_fetch": ckpt.capture_rng(), "after_fetch": None})
    context.close()
    path = tmp_path / ckpt.STEP_DIR / "e00001_b000000002.pth"
    assert ckpt.verify_step_checkpoint(ckpt.StepCheckpoint.from_path(path)) is None

    mapped = ckpt.load_step_checkpoint(ckpt.StepCheckpoint.from_path(path))
    assert aw._mapped_ranges(path), "load_step_checkpoint memory-maps the file"
    weight = mapped["model"]["0.weight"]
    expected = weight.clone()
    assert aw.release_file_pages([weight], path) > 0
    assert torch.equal(weight, expected)  # released pages are re-read from the file
    assert aw.release_file_pages([expected], path) == 0  # not in the mapping: untouched
    del mapped, weight
    gc.collect()
    assert not aw._mapped_ranges(path)

    fresh, fresh_optim = _model_and_optim(seed=2, width=4096)
    resumed = R.RunContext(fresh, [fresh_optim], [None], _options(tmp_path), _SINGLE)
    resumed.prepare(resume=True)
    assert not aw._mapped_ranges(path), "nothing of the loaded file stays mapped"
    assert "model" not in resumed.pending and "optimizers" not in resumed.pending
    for k, v in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v, rtol=0, atol=0)
    for p, q in zip(model.parameters(), fresh.parameters()):
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(fresh_optim.state[q][key], optim.state[p][key], rtol=0, atol=0)
    resumed.close()


_KILL_MID_WRITE = """
import os, signal, sys, time
import torch
from espnet_ext.train import async_writer as aw
from espnet_ext.train import checkpoint as ckpt

directory, marker = sys.argv[1], sys.argv[2]
state = {"format": ckpt.FORMAT, "w": [torch.randn(256, 1024) for _ in range(8)]}
writer = aw.AsyncCheckpointWriter(directory, keep=3, pin_memory=False)
writer.submit(dict(state, epoch=1, position=2), 1, 2)
writer.wait()
original = ckpt.ChecksumWriter.write

def write(self, data):
    if self.bytes > 2**20:  # the second checkpoint is half written
        open(marker, "w").close()
        time.sleep(60)
    return original(self, data)

ckpt.ChecksumWriter.write = write
writer.submit(dict(state, epoch=1, position=4), 1, 4)
while True:  # training goes on
    time.sleep(0.05)
"""


def test_sigkill_during_a_background_write_keeps_the_previous_checkpoint(tmp_path):
    directory, marker = tmp_path / "steps", tmp_path / "half_written"
    script = tmp_path / "kill_mid_write.py"
    script.write_text(_KILL_MID_WRITE)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [PYTHON, str(script), str(directory), str(marker)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert any(p.name.startswith(".tmp.e00001_b000000004.pth") for p in directory.iterdir())
    output = tmp_path / "out"
    (output / ckpt.STEP_DIR).parent.mkdir()
    directory.rename(output / ckpt.STEP_DIR)
    choice = ckpt.choose_resume_point(output)
    assert choice.checkpoint.key == (1, 2) and ckpt.verify_step_checkpoint(choice.checkpoint) is None
    assert ckpt.remove_temporaries(output / ckpt.STEP_DIR)


_WATCHED_SAVE = """
import sys, time, threading, types
import torch
from espnet_ext.train import checkpoint as ckpt
from espnet_ext.train import resume as R

mode, out = sys.argv[1], sys.argv[2]
R.SAVE_WATCHDOG_FACTOR = 1
options = types.SimpleNamespace(output_dir=out, ngpu=0, keep_step_checkpoints=3, watchdog_minutes=1 / 60,
                                accum_grad=1, save_every_steps=None, save_every_minutes=None)
model = torch.nn.ModuleList([torch.nn.Linear(256, 256) for _ in range(12)])
optim = torch.optim.SGD(model.parameters(), lr=0.1)
context = R.RunContext(model, [optim], [None], options,
                       types.SimpleNamespace(distributed=False, dist_rank=0, dist_world_size=1))
original = ckpt.ChecksumWriter.write

def write(self, data):
    if mode == "stuck" and self.bytes > 0:
        threading.Event().wait()  # a hung filesystem
    if mode == "slow":
        time.sleep(0.15)  # slow but progressing: about 4 s for the file, limit 1 s
    return original(self, data)

ckpt.ChecksumWriter.write = write

class Sub:
    count = total_count = 0
    stats = {}

context.watchdog.arm("training")
context.save(1, 2, Sub(), None, {"before_fetch": ckpt.capture_rng(), "after_fetch": None})
print("saved", flush=True)
context.close()
print("closed", flush=True)
"""


@pytest.mark.parametrize("mode", ["stuck", "slow"])
def test_the_watchdog_ends_a_stuck_save_but_not_a_slow_one(tmp_path, mode):
    script = tmp_path / "watched_save.py"
    script.write_text(_WATCHED_SAVE)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    tic = time.monotonic()
    proc = subprocess.run(
        [PYTHON, str(script), mode, str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.startswith("saved\n"), proc.stderr  # the save itself does not block
    if mode == "stuck":
        assert proc.returncode == 124, proc.stderr[-3000:]
        assert "trainer: no progress in checkpoint write for" in proc.stderr
        assert "espnet_ext-checkpoint-writer" in proc.stderr or "Thread" in proc.stderr  # stacks dumped
        assert time.monotonic() - tic < 60
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout == "saved\nclosed\n"
        kept = ckpt.list_step_checkpoints(tmp_path / "out" / ckpt.STEP_DIR)
        assert [c.key for c in kept] == [(1, 2)] and ckpt.verify_step_checkpoint(kept[0]) is None


def test_request_save_writes_at_the_next_update_boundary_and_waits_for_it(tmp_path):
    model, optim = _model_and_optim()
    context = R.RunContext(model, [optim], [None], _options(tmp_path), _SINGLE)
    context.on_update(1, 2)
    context.save_if_due(_SubReporter(), None, fetched=False)
    assert context.requested_save_done is None and not (tmp_path / ckpt.STEP_DIR).exists()
    context.request_save()  # e.g. from a SIGUSR1 handler
    context.on_update(1, 4)
    context.save_if_due(_SubReporter(), None, fetched=True)
    path = tmp_path / ckpt.STEP_DIR / "e00001_b000000004.pth"
    assert context.requested_save_done == str(path) and not context.writer.busy  # committed
    assert ckpt.verify_step_checkpoint(ckpt.StepCheckpoint.from_path(path)) is None
    assert context.newest == str(path)
    assert context.save_now(1, 6, _SubReporter(), None) == str(path.with_name("e00001_b000000006.pth"))
    assert (
        ckpt.verify_step_checkpoint(ckpt.StepCheckpoint.from_path(path.with_name("e00001_b000000006.pth")))
        is None
    )
    context.close()
