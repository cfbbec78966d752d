"""The slurm backend's pieces as values (resources, pre-emption, NCCL environment, num_workers),
and its job script run for real on this machine: a stand-in ``srun`` (forwards signals to its
task, as srun does) and ``scontrol`` (records a requeue) on PATH, the real torchrun with a c10d
rendezvous on localhost, and workers that write a "checkpoint" and exit 75 on SIGUSR1."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from espnet_ext.distributed.backends import build_plan, slurm
from espnet_ext.distributed.errors import LaunchError
from espnet_ext.distributed.exit_codes import REQUEUE
from espnet_ext.distributed.geometry import Geometry

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN = str(ROOT / "conf" / "pretrain_conformer_bestrq.yaml")


def test_node_resources():
    g = Geometry("slurm", 8, 16)
    assert slurm.node_resources(g, 4) == slurm.NodeResources(8 * 5 + 2, "200G", False, "2-00:00:00")
    assert slurm.node_resources(g, 4, exclusive=True, time="1:00:00") == slurm.NodeResources(
        42, None, True, "1:00:00"
    )
    assert slurm.node_resources(g, 0, mem="500G").mem == "500G"
    cpu = Geometry("slurm", 0, 2, cpu_procs=4)
    assert slurm.node_resources(cpu, 1) == slurm.NodeResources(
        4 * 2 + 2, f"{4 * 6 + 8}G", False, "2-00:00:00"
    )
    with pytest.raises(LaunchError):
        slurm.node_resources(g, -1)


def test_preemption_lead_from_the_checkpoint_write():
    # 60 s for the update in flight + 120 s write + 60 s SLURM slack = 240 s; torchrun waits 210 s.
    assert slurm.preemption(120) == slurm.Preemption(signal_lead=240, shutdown_timeout=210)
    assert slurm.preemption(120).directive == "--signal=B:USR1@240"
    assert slurm.preemption(1).signal_lead == 180  # rounded up to a minute
    assert slurm.preemption(600) == slurm.Preemption(signal_lead=720, shutdown_timeout=690)
    with pytest.raises(LaunchError):
        slurm.preemption(0)


def test_dist_env():
    env = slurm.dist_env(Geometry("slurm", 8, 16), 120)
    assert env["NCCL_DEBUG"] == "WARN" and env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1"
    assert env["NCCL_BLOCKING_WAIT"] == env["TORCH_NCCL_BLOCKING_WAIT"] == "0"
    assert env["TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC"] == "600"
    assert slurm.dist_env(Geometry("slurm", 8, 16), 400)["TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC"] == "1200"
    assert slurm.dist_env(Geometry("slurm", 0, 2, cpu_procs=2)) == {"OMP_NUM_THREADS": "1"}


def test_num_workers_from_the_config_or_command():
    assert slurm.config_num_workers(["--config", PRETRAIN]) == 4
    assert slurm.config_num_workers(["--config", PRETRAIN, "--num_workers", "6"]) == 6
    assert slurm.config_num_workers(["python", "x"]) == 1  # ESPnet's default


def test_explicit_port_and_no_wait_and_exclusive(tmp_path):
    g = Geometry("slurm", 8, 2, master_port=29611)
    plan = build_plan(g, ["train", "--config", PRETRAIN], log=str(tmp_path / "train.log"), job_name="j",
                      workdir=str(tmp_path), exclusive=True, wait=False)  # fmt: skip
    (script,) = plan.files.values()
    assert "rdzv_port=29611" in script and "socket" not in script
    assert "#SBATCH --exclusive" in script and "--mem=" not in script
    assert "#SBATCH --cpus-per-task=42" in script
    (proc,) = plan.processes
    assert proc.argv[:2] == ["sbatch", "--parsable"] and proc.submit_only


def _fake_bin(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "srun").write_text(
        "#!/usr/bin/env bash\n"
        'echo "srun $*" >> "$RECORD"\n'
        "while [[ $1 == -* ]]; do shift; done\n"
        '"$@" & child=$!\n'
        "trap 'kill -USR1 $child' USR1\ntrap 'kill -TERM $child' TERM\n"
        "while :; do wait $child; rc=$?; kill -0 $child 2>/dev/null || exit $rc; done\n"
    )
    (bindir / "scontrol").write_text(
        '#!/usr/bin/env bash\necho "scontrol $*" >> "$RECORD"\n[ "$1" = show ] && echo localhost\nexit 0\n'
    )
    for f in bindir.iterdir():
        f.chmod(0o755)
    return bindir


WORKER = f"""\
import os, signal, sys, time
got = []
signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
rank = os.environ["RANK"]
open(f"ready.{{rank}}", "w").close()
mode = sys.argv[1]
if mode != "wait":
    sys.exit(int(mode))
while not got:
    time.sleep(0.05)
time.sleep(1)  # the step checkpoint
open(f"ckpt.{{rank}}", "w").write(str(got[0]))
sys.exit({REQUEUE})
"""


def _run_job(tmp_path, mode, send=None):
    """Write the job script for 1 node x 2 CPU ranks and run it as SLURM would (bash, job id in
    the environment); ``send``: signal the batch shell once both ranks are up."""
    (tmp_path / "worker.py").write_text(WORKER)
    geometry = Geometry("slurm", 0, 1, cpu_procs=2)
    plan = build_plan(geometry, [sys.executable, "worker.py", mode], log=str(tmp_path / "train.log"),
                      job_name="j", workdir=str(tmp_path), num_workers=0)  # fmt: skip
    ((path, script),) = plan.files.items()
    Path(path).write_text(script)
    record = tmp_path / "record"
    env = dict(
        os.environ,
        PATH=f"{_fake_bin(tmp_path)}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        RECORD=str(record),
        SLURM_JOB_ID="4242",
        SLURM_JOB_NODELIST="localhost",
        OMP_NUM_THREADS="1",
    )
    with open(tmp_path / "train.log", "w") as log:
        proc = subprocess.Popen(["bash", path], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        if send is not None:
            deadline = time.time() + 120
            while not all((tmp_path / f"ready.{r}").exists() for r in (0, 1)):
                assert time.time() < deadline and proc.poll() is None, (tmp_path / "train.log").read_text()
                time.sleep(0.1)
            proc.send_signal(send)
        rc = proc.wait(timeout=300)
    return rc, record.read_text() if record.exists() else "", (tmp_path / "train.log").read_text()


@pytest.mark.slow
def test_job_script_forwards_usr1_to_the_ranks_and_requeues(tmp_path):
    rc, record, log = _run_job(tmp_path, "wait", send=signal.SIGUSR1)
    assert rc == 0, log
    # torchrun forwarded SIGUSR1 (10) to both ranks, which wrote their checkpoint and exited 75.
    assert [(tmp_path / f"ckpt.{r}").read_text() for r in (0, 1)] == ["10", "10"]
    assert "scontrol requeue 4242" in record.splitlines()
    assert "SIGUSR1: forwarding it to the ranks" in log and "requeueing" in log
    srun = next(ln for ln in record.splitlines() if ln.startswith("srun "))
    assert "--signals_to_handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1" in srun


@pytest.mark.slow
@pytest.mark.parametrize("mode,expect_rc", [("0", 0), ("3", 1)])
def test_job_script_without_a_signal_does_not_requeue(tmp_path, mode, expect_rc):
    rc, record, log = _run_job(tmp_path, mode)
    assert rc == expect_rc, log  # torchrun reports a failed rank as 1
    assert "requeue" not in record


def test_launch_without_wait_submits_and_says_how_to_follow(tmp_path, capsys):
    """--wait false: 'sbatch --parsable' (a stand-in prints a job id); the launcher prints the
    id, squeue and tail lines, and writes no footer into the job's log."""
    from espnet_ext.bin.launch import main as launch

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sbatch").write_text('#!/usr/bin/env bash\necho "$*" > "$RECORD"\necho "777;cluster"\n')
    (bindir / "sbatch").chmod(0o755)
    log = tmp_path / "exp" / "train.log"
    old = dict(os.environ)
    os.environ.update(PATH=f"{bindir}:{os.environ['PATH']}", RECORD=str(tmp_path / "record"))
    try:
        rc = launch(
            [
                "--backend",
                "slurm",
                "--ngpu",
                "8",
                "--num_nodes",
                "16",
                "--log",
                str(log),
                "--wait",
                "false",
                "--",
                "python",
                "-m",
                "espnet_ext.bin.ssl_train",
                "--config",
                PRETRAIN,
                "--output_dir",
                "exp/x",
            ]
        )
    finally:
        os.environ.clear()
        os.environ.update(old)
    out = capsys.readouterr().out
    assert rc == 0
    assert (tmp_path / "record").read_text().split() == ["--parsable", str(tmp_path / "exp" / "train.sbatch")]
    assert "launch: submitted job 777 (not waiting for it)" in out
    assert f"squeue -j 777   tail -f {log}" in out
    text = log.read_text()
    assert "# Submitted as job 777" in text and "Accounting" not in text


def _decode_dry_run(*extra):
    r = subprocess.run(["./run.sh", "--dry_run", "true", "--use_lm", "false", "--stage", "6", *extra],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return [ln for ln in r.stdout.splitlines() if "espnet2.bin.asr_inference" in ln]


@pytest.mark.slow
def test_decoding_commands_for_0_1_and_8_gpus():
    lines = _decode_dry_run()
    assert len(lines) == 2  # test_clean, test_other
    argv = lines[0].split()
    assert argv[:2] == ["utils/run_local.sh", "JOB=1:2"] and "--ngpu 0" in lines[0]
    assert "split2/keys.JOB" in lines[0] and "--gpu" not in argv
    for n in (1, 8):
        lines = _decode_dry_run("--inference_ngpu", str(n))
        argv = lines[0].split()
        assert argv[:5] == ["utils/run_local.sh", "--gpu", "1", "--num_threads", "2"]
        assert argv[5] == f"JOB=1:{n}" and "--ngpu 1" in lines[0] and f"split{n}/keys.JOB" in lines[0]
    lines = _decode_dry_run("--inference_ngpu", "8", "--cmd_backend", "slurm", "--use_lm", "false",
                            "--slurm_opts", "--partition=gpu")  # fmt: skip
    assert lines[0].split()[:7] == [
        "utils/run_slurm.sh",
        "--partition=gpu",
        "--gpu",
        "1",
        "--num_threads",
        "2",
        "JOB=1:8",
    ]


@pytest.mark.slow
def test_stage_2_with_slurm_is_one_job_array_over_the_sets(tmp_path):
    """Stage 2 with the slurm backend submits one array (a stand-in sbatch keeps the script
    and runs nothing), task k extracting the k-th set with --nj workers and --chunk_size."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sbatch").write_text(f'#!/usr/bin/env bash\necho "$*" >> {tmp_path}/record\nexit 0\n')
    (bindir / "sbatch").chmod(0o755)
    dump = tmp_path / "dump"
    r = subprocess.run(["./run.sh", "--stage", "2", "--stop_stage", "2", "--cmd_backend", "slurm", "--use_lm", "false",
                        "--chunk_size", "1000", "--dumpdir", str(dump), "--datadir", str(tmp_path / "data")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}"))  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    script = dump / "log" / "extract_feats.array.sbatch"
    assert (tmp_path / "record").read_text().split() == ["--wait", str(script)]
    text = script.read_text()
    assert "#SBATCH --array=1-5" in text and "#SBATCH --cpus-per-task=2" in text
    assert (
        "--data_dir {0}/data/ITEM --out_dir {1}/ITEM --nj 2 --chunk_size 1000".format(tmp_path, dump) in text
    )
    items = (dump / "log" / "extract_feats.items").read_text().split()
    assert items == ["pretrain", "train_clean", "dev_clean", "test_clean", "test_other"]
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
