"""Run a :class:`~espnet_ext.distributed.plan.LaunchPlan`: write its files, start its
processes, pump their output into the logs (Kaldi-style header and footer), stop the others
when one fails, and return the exit status.

**No orphans.** Each process is started in its own process group with
``PR_SET_PDEATHSIG`` = SIGTERM (Linux): when the launcher dies, even by SIGKILL (a dropped
login session, a killed stage script), the kernel sends it SIGTERM. A training process then
stops at its next update boundary with a step checkpoint (:mod:`espnet_ext.train.signals`);
torchrun forwards SIGTERM to its ranks (which run in their own sessions, and themselves die
with torchrun) and SIGKILLs them after its shutdown timeout. SIGTERM, SIGHUP and SIGUSR1 sent to the
launcher are forwarded to the process groups (SIGHUP as SIGTERM), and it waits for them.
For ``sbatch --wait`` (the slurm backend) the SIGTERM ends only the waiting ``sbatch``,
not the job: the job is SLURM's (``scancel`` it; a second trainer on the same experiment
stops at the output directory's lock, :mod:`espnet_ext.train.lock`).

**Requeue.** A training that stopped on a signal exits 75
(:data:`~espnet_ext.distributed.exit_codes.REQUEUE`) on every rank. torchrun reports that as
a failure with its own exit status (1), so the launcher returns 75 when a rank says it
stopped for requeue: through the file named by ``ESPNET_EXT_REQUEUE_MARK``, which it sets
for its processes, or torchrun's failure report naming exit code 75 as the root cause (the
remote hosts of the torchrun backend). torchrun is told to forward SIGUSR1 too
(``PET_SIGNALS_TO_HANDLE``; an unhandled SIGUSR1 would kill torchrun and orphan its ranks).
"""

import ctypes
import ctypes.util
import datetime
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
from typing import Callable, List, Optional

from espnet_ext.distributed.exit_codes import REQUEUE
from espnet_ext.distributed.plan import LaunchPlan
from espnet_ext.distributed.report import submitted_lines

REQUEUE_MARK_ENV = "ESPNET_EXT_REQUEUE_MARK"  # as espnet_ext.train.signals
TORCHRUN_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
FORWARDED = {signal.SIGTERM: signal.SIGTERM, signal.SIGHUP: signal.SIGTERM, signal.SIGUSR1: signal.SIGUSR1}
_PR_SET_PDEATHSIG = 1
# torchrun's failure summary: "Root Cause (first observed failure):" ... "exitcode  : 75"
_ROOT_CAUSE = re.compile(r"Root Cause \(first observed failure\):.*?exitcode\s*:\s*(-?\d+)", re.S)


def _child_setup() -> Optional[Callable[[], None]]:
    """The ``preexec_fn`` of every process: die with the launcher (Linux). libc is loaded
    here, in the parent: the child only calls prctl (no imports, no allocation)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the launcher died before prctl
            os.kill(os.getpid(), signal.SIGTERM)

    return setup


def _child_env(mark: Optional[str]) -> dict:
    env = dict(os.environ)
    env.setdefault("PET_SIGNALS_TO_HANDLE", TORCHRUN_SIGNALS)
    env.pop(REQUEUE_MARK_ENV, None)
    if mark is not None:
        env[REQUEUE_MARK_ENV] = mark
    return env


def _pump(proc: subprocess.Popen, log_path: str, echo: bool, tail: List[str]) -> None:
    with open(log_path, "a", errors="replace") as log:
        for line in iter(proc.stdout.readline, b""):
            text = line.decode(errors="replace")
            tail.append(text)
            del tail[:-200]  # enough for torchrun's failure summary
            log.write(text)
            log.flush()
            if echo:
                sys.stderr.write(text)
                sys.stderr.flush()


def _header(path: str, lines: List[str]) -> None:
    # Append: a resumed training keeps the log of the epochs before the interruption.
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        for line in lines:
            f.write(f"# {line}\n")
        f.write(f"# Started at {datetime.datetime.now():%c}\n")


def _footer(path: str, status: int) -> None:
    with open(path, "a") as f:
        f.write(f"# Accounting: status={status}\n# Ended at {datetime.datetime.now():%c}\n")


def _write_files(plan: LaunchPlan) -> None:
    for path, content in plan.files.items():
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)


def _wait_all(procs: List[subprocess.Popen]) -> int:
    """The first non-zero exit status (0 if none); the first failure stops the others."""
    status = 0
    remaining = list(range(len(procs)))
    while remaining:
        for k in list(remaining):
            try:
                rc = procs[k].wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                continue
            remaining.remove(k)
            if rc != 0 and status == 0:
                status = rc
                for j in remaining:  # one node failed: stop the others
                    procs[j].send_signal(signal.SIGTERM)
    return status


def _submit(argv: List[str], log: str) -> int:
    """Run a submission (``sbatch --parsable``): its output is ``<job id>[;cluster]``."""
    r = subprocess.run(argv, stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        print(f"launch: submission failed (status {r.returncode}): {shlex.join(argv)}", file=sys.stderr)
        return r.returncode
    job_id = r.stdout.strip().split(";", 1)[0]
    with open(log, "a") as f:
        f.write(f"# Submitted as job {job_id} at {datetime.datetime.now():%c}\n")
    print("\n".join(submitted_lines(job_id, log)), flush=True)
    return 0


def _signal_groups(procs: List[subprocess.Popen], sig: int) -> None:
    """Send ``sig`` to the process group of each process still running."""
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass


def _requeue_asked(mark: str, tails: List[List[str]]) -> bool:
    """Whether a rank stopped for requeue: its mark, or torchrun's root cause exit code 75."""
    if os.path.isfile(mark) and os.path.getsize(mark) > 0:
        return True
    for tail in tails:
        causes = _ROOT_CAUSE.findall("".join(tail))
        if causes and int(causes[-1]) == REQUEUE:
            return True
    return False


def run_plan(plan: LaunchPlan, header: List[str], main_log: str) -> int:
    """Start the plan's processes, route their output to the logs, return the exit status.

    Args:
        plan: what to run.
        header: lines written (as ``# `` comments) at the top of every log.
        main_log: the log of processes that have none of their own (sbatch).

    Returns:
        75 when the training stopped for requeue (a signal, a step checkpoint), else the
        first failing process's exit status, 130 on Ctrl-C, else 0.
    """
    _write_files(plan)
    logs = [p.log or main_log for p in plan.processes]
    for path, proc in zip(logs, plan.processes):
        _header(path, header + [shlex.join(proc.argv)])
    if len(plan.processes) == 1 and plan.processes[0].submit_only:
        return _submit(plan.processes[0].argv, main_log)
    fd, mark = tempfile.mkstemp(prefix="espnet_ext_requeue.")
    os.close(fd)
    procs, pumps, tails = [], [], []

    def forward(signum, frame) -> None:
        _signal_groups(procs, FORWARDED[signum])

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, forward) for s in FORWARDED}
    setup = _child_setup()
    try:
        for k, (path, spec) in enumerate(zip(logs, plan.processes)):
            # Own process group: a signal to the launcher's group (Ctrl-C) is handled here,
            # and the launcher's signals reach the whole group of each process. The mark
            # is for processes on this machine (sbatch: the job's status says it).
            kwargs = dict(preexec_fn=setup, process_group=0, env=_child_env(mark if spec.log else None))
            if spec.log:
                proc = subprocess.Popen(spec.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)
                tail: List[str] = []
                pump = threading.Thread(target=_pump, args=(proc, path, k == 0, tail), daemon=True)
                pump.start()
                pumps.append(pump)
                tails.append(tail)
            else:  # sbatch: the job writes the log itself
                proc = subprocess.Popen(spec.argv, **kwargs)
            procs.append(proc)
        status = _wait_all(procs)
    except KeyboardInterrupt:
        _signal_groups(procs, signal.SIGTERM)
        for proc in procs:
            proc.wait()
        status = 130
    except BaseException:
        _signal_groups(procs, signal.SIGTERM)  # no process outlives a failed launcher
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    for pump in pumps:
        pump.join()
    if status != 0 and _requeue_asked(mark, tails):
        status = REQUEUE
    os.unlink(mark)
    for path in dict.fromkeys(logs):
        _footer(path, status)
    if status == REQUEUE:
        print(
            f"launch: training stopped for requeue (status {REQUEUE}) after a step checkpoint; "
            "run it again with --resume true to continue",
            file=sys.stderr,
        )
    elif status != 0:
        failed = [p for p, proc in zip(logs, procs) if proc.returncode not in (0, None)]
        print(
            f"launch: training failed (status {status}); see {' '.join(failed) or main_log}", file=sys.stderr
        )
    return status
