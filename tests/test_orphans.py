"""No orphans, one trainer per experiment, requeue status through the launcher (issue 13).

Real trainings (the tiny corpus and fault wrapper of ``test_checkpoint_resume``) started
through ``python -m espnet_ext.bin.launch``: the launcher is killed with SIGKILL and no
training process may outlive it by more than a few seconds; a second trainer on a locked
output directory stops at once naming the first; a stale lock (SIGKILL) blocks nothing.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from espnet_ext.distributed import runner
from espnet_ext.distributed.exit_codes import REQUEUE
from espnet_ext.distributed.plan import LaunchPlan, Process
from espnet_ext.train import checkpoint as ckpt
from espnet_ext.train.lock import OutputDirInUse, OutputDirLock

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_checkpoint_resume import PYTHON, REPO, _args, _env, _make_corpus, _ok, _resumed_from, _train  # noqa: E402


def _processes_of(marker: str):
    """pids of the processes whose command line contains ``marker`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry))
    return found


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 600):
    deadline = time.monotonic() + timeout
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"exited {proc.poll()} before {path} appeared"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _make_corpus(tmp_path_factory.mktemp("corpus"))


# ---------------------------------------------------------------------------------------
# Fast: the lock and the launcher's status


def test_output_dir_lock_names_the_holder_and_is_released(tmp_path):
    first = OutputDirLock(tmp_path / "exp").acquire()
    with pytest.raises(OutputDirInUse) as e:
        OutputDirLock(tmp_path / "exp").acquire()
    assert (
        f"output dir {tmp_path / 'exp'} is in use by pid {os.getpid()} on host {socket.gethostname()} since "
    ) in str(e.value)
    first.release()
    with OutputDirLock(tmp_path / "exp"):  # free again
        pass


def test_stale_lock_of_a_killed_holder_blocks_nothing(tmp_path):
    code = (
        "import sys, time; from espnet_ext.train.lock import OutputDirLock\n"
        f"OutputDirLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([PYTHON, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert holder.stdout.readline() == "locked\n"
    with pytest.raises(OutputDirInUse, match=f"in use by pid {holder.pid} "):
        OutputDirLock(tmp_path).acquire()
    holder.kill()
    holder.wait()
    assert (tmp_path / ".train.lock").exists()
    OutputDirLock(tmp_path).acquire().release()


def _run(tmp_path, code: str) -> int:
    plan = LaunchPlan([Process([PYTHON, "-c", code], str(tmp_path / "train.log"))], {})
    return runner.run_plan(plan, ["test"], str(tmp_path / "main.log"))


def test_launcher_returns_the_requeue_status(tmp_path):
    assert _run(tmp_path, "import sys; sys.exit(75)") == REQUEUE
    # torchrun exits 1 after a forwarded signal: the ranks' mark says requeue.
    mark = (
        f"import os, sys; open(os.environ[{runner.REQUEUE_MARK_ENV!r}], 'a').write('rank 0\\n'); sys.exit(1)"
    )
    assert _run(tmp_path, mark) == REQUEUE
    # torchrun's failure report, root cause exit code 75 (a remote host's torchrun).
    summary = (
        "Root Cause (first observed failure):\n[0]:\n  rank      : 1 (local_rank: 1)\n"
        "  exitcode  : 75 (pid: 123)\n"
    )
    assert _run(tmp_path, f"import sys; print({summary!r}); sys.exit(1)") == REQUEUE
    assert _run(tmp_path, f"import sys; print({summary.replace('75', '1')!r}); sys.exit(1)") == 1
    assert _run(tmp_path, "import sys; sys.exit(3)") == 3
    assert "# Accounting: status=75" in (tmp_path / "train.log").read_text()


def test_launcher_children_get_sigterm_when_it_is_killed(tmp_path):
    """Not a training: a child that records SIGTERM. The launcher is killed with SIGKILL."""
    got = tmp_path / "got_sigterm"
    child = (
        f"import signal, sys, time, pathlib\n"
        f"def h(s, f): pathlib.Path({str(got)!r}).write_text('x'); sys.exit(0)\n"
        f"signal.signal(signal.SIGTERM, h); print('ready', flush=True); time.sleep(60)\n"
    )
    launcher = (
        f"import sys; from espnet_ext.distributed import runner; "
        f"from espnet_ext.distributed.plan import LaunchPlan, Process\n"
        f"runner.run_plan(LaunchPlan([Process([sys.executable, '-c', {child!r}], "
        f"{str(tmp_path / 'log')!r})], {{}}), [], {str(tmp_path / 'log')!r})\n"
    )
    proc = subprocess.Popen([PYTHON, "-c", launcher], cwd=REPO, stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline() == "ready\n"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while not got.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got.exists()


# ---------------------------------------------------------------------------------------
# Real trainings through the launcher


def _launch(corpus: Path, out: Path, procs: int, *extra: str, **faults) -> subprocess.Popen:
    cmd = [
        PYTHON,
        "-m",
        "espnet_ext.bin.launch",
        "--backend",
        "local",
        "--cpu_procs",
        str(procs),
        "--log",
        str(out / "train.log"),
        "--accept_global_batch",
        "true",
        "--",
        PYTHON,
        str(corpus / "inject.py"),
        *_args("ssl", corpus, out, *extra),
    ]
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        cmd, cwd=REPO, env=_env(**faults), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


@pytest.mark.slow
@pytest.mark.parametrize("procs", [1, 2])
def test_no_training_process_outlives_a_killed_launcher(corpus, tmp_path, procs):
    """The launcher of a training (the command itself, or torchrun with 2 gloo ranks) is
    killed with SIGKILL while the ranks are in epoch 2. Its processes get SIGTERM (the
    launcher's PDEATHSIG; torchrun forwards it, and its ranks die with it): they stop at the
    next update boundary with a step checkpoint and are all gone within seconds."""
    out = tmp_path / f"orphan{procs}"
    stamp = tmp_path / f"stamp{procs}"
    launcher = _launch(
        corpus, out, procs, "--save_every_steps", "none", FAULT_PAUSE_AFTER=9, FAULT_STAMP=stamp, FAULT_RANK=0
    )
    _wait_for(stamp, launcher)
    trainers = _processes_of(str(out))
    assert len(trainers) >= 1 + procs - (procs == 1), trainers  # (torchrun +) the ranks
    killed = time.monotonic()
    launcher.kill()
    launcher.wait()
    while _processes_of(str(out)) and time.monotonic() - killed < 60:
        time.sleep(0.05)
    gone_after = time.monotonic() - killed
    left = _processes_of(str(out))
    print(
        f"\n{procs} proc(s): {len(trainers)} training processes, all gone {gone_after:.2f} s after "
        f"the launcher's SIGKILL; left: {left}"
    )
    assert not left, left
    assert gone_after < 15, gone_after
    # They stopped on the SIGTERM: the step checkpoint of the update in flight was written.
    assert [c.key for c in ckpt.list_step_checkpoints(out / ckpt.STEP_DIR)] == [(2, 4)]


@pytest.mark.slow
def test_second_trainer_on_a_locked_output_dir_stops_at_once(corpus, tmp_path):
    out = tmp_path / "locked"
    stamp = tmp_path / "stamp"
    first = subprocess.Popen(
        [PYTHON, str(corpus / "inject.py"), *_args("ssl", corpus, out), "--ngpu", "0"],
        cwd=REPO,
        env=_env(FAULT_PAUSE_AFTER=3, FAULT_STAMP=stamp, FAULT_PAUSE_SECONDS=900),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(stamp, first)
        tic = time.monotonic()
        second = _train("ssl", corpus, out)
        took = time.monotonic() - tic
        log = second.stdout + second.stderr
        assert second.returncode not in (0, REQUEUE), log[-3000:]
        assert (
            f"output dir {out} is in use by pid {first.pid} on host {socket.gethostname()} since "
        ) in log, log[-3000:]
        assert "epoch started" not in log  # no training
        print(f"\nthe second trainer stopped {took:.1f} s after its start (imports and model build included)")
        assert first.poll() is None  # the first one runs on
    finally:
        first.kill()  # SIGKILL: the lock dies with it
        first.wait()
    # The lock file is still there, the lock is not: the resume runs.
    assert (out / ".train.lock").exists()
    log = _ok(_train("ssl", corpus, out))
    assert "e00001_b000000002.pth (epoch 1, 2 micro-batches done)" in _resumed_from(log)
