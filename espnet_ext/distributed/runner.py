"""Run a :class:`~espnet_ext.distributed.plan.LaunchPlan`: write its files, start its
processes, pump their output into the logs (Kaldi-style header and footer), stop the others
when one fails, and return the exit status."""

import datetime
import os
import shlex
import signal
import subprocess
import sys
import threading
from typing import List

from espnet_ext.distributed.plan import LaunchPlan
from espnet_ext.distributed.report import submitted_lines


def _pump(proc: subprocess.Popen, log_path: str, echo: bool) -> None:
    with open(log_path, "a", errors="replace") as log:
        for line in iter(proc.stdout.readline, b""):
            text = line.decode(errors="replace")
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


def run_plan(plan: LaunchPlan, header: List[str], main_log: str) -> int:
    """Start the plan's processes, route their output to the logs, return the exit status.

    Args:
        plan: what to run.
        header: lines written (as ``# `` comments) at the top of every log.
        main_log: the log of processes that have none of their own (sbatch).

    Returns:
        The first failing process's exit status, 130 on Ctrl-C, else 0.
    """
    _write_files(plan)
    logs = [p.log or main_log for p in plan.processes]
    for path, proc in zip(logs, plan.processes):
        _header(path, header + [shlex.join(proc.argv)])
    if len(plan.processes) == 1 and plan.processes[0].submit_only:
        return _submit(plan.processes[0].argv, main_log)
    procs, pumps = [], []
    try:
        for k, (path, spec) in enumerate(zip(logs, plan.processes)):
            if spec.log:
                proc = subprocess.Popen(spec.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                pump = threading.Thread(target=_pump, args=(proc, path, k == 0), daemon=True)
                pump.start()
                pumps.append(pump)
            else:  # sbatch: the job writes the log itself
                proc = subprocess.Popen(spec.argv)
            procs.append(proc)
        status = _wait_all(procs)
    except KeyboardInterrupt:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait()
        status = 130
    for pump in pumps:
        pump.join()
    for path in dict.fromkeys(logs):
        _footer(path, status)
    if status != 0:
        failed = [p for p, proc in zip(logs, procs) if proc.returncode not in (0, None)]
        print(f"launch: training failed (status {status}); see {' '.join(failed) or main_log}",
              file=sys.stderr)
    return status
