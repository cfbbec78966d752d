"""The training launcher: geometry, batch arithmetic and the global-batch check as values,
the report's text against one golden file, the exact commands of every backend (dry run),
cmd.sh, and the recipe's dry run.

The golden text is tests/golden/launch_report.txt; after a deliberate change of wording,
rewrite it with ``LAUNCH_GOLDEN_UPDATE=1 python -m pytest tests/test_launch.py -k golden``
and review the diff."""

import dataclasses
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from espnet_ext.bin.launch import main as launch
from espnet_ext.distributed.backends import build_plan
from espnet_ext.distributed.batch import (
    BinsCannotHoldGlobalBatch,
    GlobalBatchFix,
    GlobalBatchMismatch,
    PerRankMismatch,
    TooFewUtterances,
    UnequalSplit,
    batch_arithmetic,
)
from espnet_ext.distributed.batch_settings import (
    ESPNET_DEFAULTS,
    BatchSettings,
    DataSize,
    data_size,
    read_batch_settings,
)
from espnet_ext.distributed.errors import LaunchError
from espnet_ext.distributed.geometry import Geometry
from espnet_ext.distributed.report import launch_report, refusal_messages

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "launch_report.txt"
PRETRAIN = str(ROOT / "conf" / "pretrain_conformer_bestrq.yaml")
FINETUNE = str(ROOT / "conf" / "finetune_conformer_transformer.yaml")
EMBEDDED = str(ROOT / "conf" / "finetune_conformer_transformer_embedded.yaml")
WORKER_NCCL = ["--ngpu", "1", "--multiprocessing_distributed", "false", "--dist_backend", "nccl"]


def _launch(capsys, *argv):
    rc = launch([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _ssl_cmd(config=PRETRAIN, *extra):
    return ["--", "python", "-m", "espnet_ext.bin.ssl_train", "--config", config,
            "--output_dir", "exp/ssl_full", *extra]  # fmt: skip


def _arithmetic(geometry, *extra, config=PRETRAIN, **data):
    settings = read_batch_settings(["--config", config, *extra])
    return batch_arithmetic(settings, geometry, data_size(settings, **data))


def _slurm(ngpu, num_nodes):
    return Geometry("slurm", ngpu, num_nodes)


def _cpu(procs):
    return Geometry("local", 0, 1, cpu_procs=procs)


def test_geometry_values():
    g = Geometry("slurm", 8, 16)
    assert (g.nproc_per_node, g.world_size, g.dist_backend) == (8, 128, "nccl")
    g = Geometry("local", 0, 1, cpu_procs=3)
    assert (g.nproc_per_node, g.world_size, g.dist_backend) == (3, 3, "gloo")
    g = Geometry("torchrun", 0, 2, hosts=("a", "b"))
    assert (g.nproc_per_node, g.world_size) == (1, 2)


def test_dry_run_16x8_slurm_prints_sbatch_srun_torchrun_and_arithmetic(capsys, tmp_path):
    a = _arithmetic(_slurm(8, 16), data_hours=600000)
    assert (a.ranks, a.batch_size, a.per_rank, a.remainder, a.accum_grad) == (128, 256, 2, 0, 8)
    assert (a.utts_per_micro_batch, a.utts_per_step, a.global_batch_utts) == (256, 2048, 2048)
    assert a.global_batch_matches and not a.stops and not a.fatal
    assert a.grad_allreduces_per_step == 1  # accum_no_sync true; ESPnet's stock trainer: 8
    # 600k h / 15 s = 144M utterances; floor(144M / 256) micro-batches; / 8 steps.
    assert a.data == DataSize(
        144_000_000,
        "144,000,000 utterances (600000 h at an assumed mean of 15 s per utterance)",
        seconds=600_000 * 3600,
    )
    assert (a.micro_batches_per_pass, a.steps_per_pass) == (562_500, 70_312)
    assert (a.max_epoch, a.steps_per_epoch, a.total_steps) == (320, 1_250, 400_000)
    assert round(a.total_passes, 2) == 5.69

    log = tmp_path / "exp" / "train.log"
    rc, out, err = _launch(
        capsys, "--backend", "slurm", "--ngpu", 8, "--num_nodes", 16, "--log", log,
        "--slurm_opts", "--partition=gpu --time=7-00:00:00", "--data_hours", 600000,
        "--dry_run", "true", *_ssl_cmd(),
    )  # fmt: skip
    assert rc == 0, err
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("# ---- ") and "written at launch" in ln)
    end = next(i for i, ln in enumerate(lines) if ln.startswith("# ---- end of"))
    script = lines[start + 1 : end]
    for directive in (
        "--nodes=16",
        "--ntasks-per-node=1",
        "--gpus-per-node=8",
        f"--output={log}",
        "--job-name=ssl_full",
        "--partition=gpu",
        "--time=7-00:00:00",
        "--cpus-per-task=42",
        "--mem=200G",
        "--signal=B:USR1@240",
        "--requeue",
    ):
        assert f"#SBATCH {directive}" in script, directive
    assert "#SBATCH --time=2-00:00:00" not in script  # --slurm_opts overrides the computed --time
    for env in (
        "NCCL_DEBUG=WARN",
        "TORCH_NCCL_ASYNC_ERROR_HANDLING=1",
        "TORCH_NCCL_BLOCKING_WAIT=0",
        "NCCL_BLOCKING_WAIT=0",
        "TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC=600",
    ):
        assert f"export {env}" in script, env
    assert any(ln.startswith("rdzv_port=$(python -c 'import socket;") for ln in script)
    srun = next(ln for ln in script if ln.startswith("srun "))
    assert srun.endswith(" &")
    argv = shlex.split(
        srun[:-2].replace('"${rdzv_host}:${rdzv_port}"', "HOST:PORT").replace('"${SLURM_JOB_ID}"', "JOB")
    )
    assert argv[:3] == ["srun", "--kill-on-bad-exit=1", "--cpus-per-task=42"]
    assert argv[3:21] == ["torchrun", "--nnodes", "16", "--nproc_per_node", "8", "--rdzv_backend", "c10d",
                          "--rdzv_endpoint", "HOST:PORT", "--rdzv_id", "JOB",
                          "--signals_to_handle", "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1",
                          "--shutdown_timeout", "210", "--no-python", "python", "-m"]  # fmt: skip
    assert argv[-6:] == WORKER_NCCL
    assert 'scontrol requeue "${SLURM_JOB_ID}"' in " ".join(script) and '[ "${rc}" -eq 75 ]' in " ".join(
        script
    )
    script_file = tmp_path / "check.sbatch"
    script_file.write_text("\n".join(script) + "\n")
    assert subprocess.run(["bash", "-n", str(script_file)]).returncode == 0
    assert lines[end + 1] == f"sbatch --wait {tmp_path / 'exp' / 'train.sbatch'}"
    assert not (tmp_path / "exp").exists(), "a dry run must not write anything"


def test_dry_run_16x8_torchrun_one_command_per_host(capsys, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("# the allocation\n" + "\n".join(f"gpu{k:02d}" for k in range(16)) + "\n")
    a = _arithmetic(_slurm(8, 16), config=FINETUNE)
    assert (a.utts_per_step, a.ranks, a.per_rank, a.accum_grad) == (2048, 128, 2, 8)
    rc, out, err = _launch(
        capsys, "--backend", "torchrun", "--hosts", hosts, "--ngpu", 8, "--num_nodes", 16,
        "--master_port", 29611, "--log", tmp_path / "train.log", "--dry_run", "true",
        "--", "python", "-m", "espnet_ext.bin.asr_train", "--config", FINETUNE,
    )  # fmt: skip
    assert rc == 0, err
    ssh = [shlex.split(ln) for ln in out.splitlines() if ln.startswith("ssh ")]
    assert len(ssh) == 16
    for k, argv in enumerate(ssh):
        assert argv[:4] == ["ssh", "-o", "BatchMode=yes", f"gpu{k:02d}"]
        remote = shlex.split(argv[4].split(" && ")[-1])
        assert remote[:14] == ["torchrun", "--nnodes", "16", "--nproc_per_node", "8", "--rdzv_backend",
                               "static", "--master_addr", "gpu00", "--master_port", "29611",
                               "--node_rank", str(k), "--no-python"]  # fmt: skip
        assert remote[-4:] == WORKER_NCCL[2:]
    geometry = Geometry("torchrun", 8, 3, hosts=("a", "b", "c"))
    plan = build_plan(geometry, ["train"], log="exp/train.log", job_name="j", workdir=str(tmp_path))
    assert [p.log for p in plan.processes] == ["exp/train.log", "exp/train.node1.log", "exp/train.node2.log"]
    assert plan.files == {}


@pytest.mark.parametrize("ngpu,cpu_procs,backend,per_proc", [(0, 2, "gloo", "0"), (2, 1, "nccl", "1")])
def test_dry_run_1x2(capsys, tmp_path, ngpu, cpu_procs, backend, per_proc):
    geometry = Geometry("local", ngpu, 1, cpu_procs=cpu_procs)
    assert (geometry.world_size, geometry.dist_backend) == (2, backend)
    # The full config keeps 2 utterances per rank (micro_batch_per_rank): on 2 ranks ESPnet's
    # global batch_size 256 would put 128 on each, so the launch stops and names the numbers.
    (stop,) = _arithmetic(geometry).stops
    assert isinstance(stop, PerRankMismatch)
    assert (stop.micro_batch_per_rank, stop.batch_size, stop.ranks, stop.per_rank) == (2, 256, 2, 128)
    assert (stop.new_batch_size, stop.new_accum_grad) == (4, 512)
    argv = ["--ngpu", ngpu, "--cpu_procs", cpu_procs, "--log", tmp_path / "train.log", "--dry_run", "true"]
    rc, out, err = _launch(capsys, *argv, *_ssl_cmd())
    assert rc == 2 and err.startswith("launch: error: ")

    fixed = _arithmetic(geometry, "--batch_size", "4", "--accum_grad", "512")
    assert (fixed.per_rank, fixed.utts_per_step) == (2, 2048) and fixed.global_batch_matches
    rc, out, err = _launch(capsys, *argv, *_ssl_cmd(PRETRAIN, "--batch_size", "4", "--accum_grad", "512"))
    # 64x the accumulation, same micro-batches per epoch: 1/64 of the scheduler's updates
    assert rc == 2 and "total_steps 400,000 -> 6,250" in err
    rc, out, err = _launch(
        capsys,
        *argv,
        *_ssl_cmd(PRETRAIN, "--batch_size", "4", "--accum_grad", "512", "--num_iters_per_epoch", "640000"),
    )
    assert rc == 0, err
    cmd = shlex.split(out.strip().splitlines()[-1])
    assert cmd[:10] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes",
                        "1", "--nproc_per_node", "2", "--no-python", "python"]  # fmt: skip
    assert cmd[-6:] == ["--ngpu", per_proc, "--multiprocessing_distributed", "false",
                        "--dist_backend", backend]  # fmt: skip


def test_single_process_runs_the_command_itself(capsys, tmp_path):
    a = _arithmetic(_cpu(1), config=EMBEDDED)
    bins = yaml.safe_load(Path(EMBEDDED).read_text())["batch_bins"]
    assert (a.batch_type, a.by_utterances, a.batch_bins, a.ranks) == ("numel", False, bins, 1)
    rc, out, err = _launch(
        capsys,
        "--log",
        tmp_path / "l",
        "--dry_run",
        "true",
        "--",
        "python",
        "-m",
        "espnet_ext.bin.asr_train",
        "--config",
        EMBEDDED,
    )
    assert rc == 0, err
    assert out.strip().splitlines()[-1] == f"python -m espnet_ext.bin.asr_train --config {EMBEDDED} --ngpu 0"


def test_global_batch_mismatch_stops_and_names_the_numbers(capsys, tmp_path):
    per_rank, stop = _arithmetic(_cpu(2), "--batch_size", "16").stops
    assert isinstance(per_rank, PerRankMismatch)  # 8 per rank, the config is sized for 2
    assert stop == GlobalBatchMismatch(
        utts_per_step=128, utts_per_micro_batch=16, accum_grad=8, global_batch_utts=2048,
        global_batch_source=f"global_batch_utts in {PRETRAIN}",
        fix=GlobalBatchFix(2048, 2, 16, 8, batch_size_alone=256, accum_grad_alone=128),
    )  # fmt: skip
    argv = ["--ngpu", 0, "--cpu_procs", 2, "--log", tmp_path / "l", "--dry_run", "true",
            *_ssl_cmd(PRETRAIN, "--batch_size", "16")]  # fmt: skip
    rc, out, err = _launch(capsys, *argv)
    assert rc == 2
    assert "--accept_global_batch true" in err
    assert "command:" not in out  # nothing about to run

    rc, out, err = _launch(capsys, "--accept_global_batch", "true", *argv)
    assert rc == 0, err
    assert "accepted (--accept_global_batch true): the global batch would be 128" in out
    cmd = out.strip().splitlines()[-1]
    assert "--batch_size 16 --accept_global_batch true --ngpu 0" in cmd  # recorded in config.yaml


def test_accepting_in_the_config_or_command_counts(capsys, tmp_path):
    rc, out, _ = _launch(
        capsys,
        "--log",
        tmp_path / "l",
        "--dry_run",
        "true",
        *_ssl_cmd(
            PRETRAIN, "--accum_grad", "4", "--num_iters_per_epoch", "5000", "--accept_global_batch", "true"
        ),
    )
    assert rc == 0 and "accepted" in out


def test_geometry_that_cannot_split_the_global_batch_stops(capsys, tmp_path):
    # The full pre-training config reads shards: every rank gets batch_size // ranks.
    a = _arithmetic(_slurm(8, 3))
    assert (a.ranks, a.sharded, a.per_rank, a.utts_per_micro_batch, a.remainder) == (24, True, 10, 240, 16)
    per_rank, mismatch = a.stops
    assert isinstance(per_rank, PerRankMismatch) and (per_rank.ranks, per_rank.per_rank) == (24, 10)
    assert isinstance(mismatch, GlobalBatchMismatch)
    assert mismatch.fix == GlobalBatchFix(2048, 24, 256, 8, nearest=(1920, 2112))  # 24 x 10 x 8, 24 x 11 x 8
    rc, _, _ = _launch(
        capsys,
        "--backend",
        "slurm",
        "--ngpu",
        8,
        "--num_nodes",
        3,
        "--log",
        tmp_path / "l",
        "--dry_run",
        "true",
        *_ssl_cmd(),
    )
    assert rc == 2

    # ESPnet's sequence iterator on 3 ranks: 2048 per step, but 86 + 85 + 85 per micro-batch.
    a = _arithmetic(_cpu(3), "--iterator_type", "sequence", "--micro_batch_per_rank", "null")
    assert (a.per_rank, a.remainder, a.utts_per_step) == (85, 1, 2048)
    assert a.stops == (UnequalSplit(2048, 3, 256, GlobalBatchFix(2048, 3, 256, 8, nearest=(2040, 2064))),)

    # 32 ranks, 96 x 8 = 768; 2048 is no multiple of 96, so only batch_size can change.
    a = _arithmetic(_slurm(8, 4), "--batch_size", "96")
    mismatch = next(p for p in a.stops if isinstance(p, GlobalBatchMismatch))
    assert (mismatch.fix.batch_size_alone, mismatch.fix.accum_grad_alone) == (256, None)
    rc, _, _ = _launch(
        capsys,
        "--backend",
        "slurm",
        "--ngpu",
        8,
        "--num_nodes",
        4,
        "--log",
        tmp_path / "l",
        "--dry_run",
        "true",
        *_ssl_cmd(PRETRAIN, "--batch_size", "96"),
    )
    assert rc == 2

    # More ranks than utterances per micro-batch: ESPnet itself would fail, accepting does not help.
    a = _arithmetic(_slurm(8, 64))
    assert a.fatal == (TooFewUtterances(256, 512, GlobalBatchFix(2048, 512, 256, 8, both=(512, 4))),)
    for accept in ("false", "true"):
        rc, out, err = _launch(capsys, "--backend", "slurm", "--ngpu", 8, "--num_nodes", 64,
                               "--accept_global_batch", accept, "--log", tmp_path / "l",
                               "--dry_run", "true", *_ssl_cmd())  # fmt: skip
        assert rc == 2
        assert err.splitlines() == refusal_messages(a)
    # The same with a data size given: the micro-batches per pass are unknown, not a crash.
    a = _arithmetic(_slurm(8, 64), "--batch_size", "256", data_utts=100_000)
    assert a.micro_batches_per_pass is None and isinstance(a.fatal[0], TooFewUtterances)


def test_bin_batches_cannot_hold_a_global_batch(capsys, tmp_path):
    a = _arithmetic(_cpu(1), "--global_batch_utts", "64", config=EMBEDDED)
    assert a.stops == (BinsCannotHoldGlobalBatch(64, "--global_batch_utts on the command line", "numel"),)
    rc, _, err = _launch(
        capsys,
        "--log",
        tmp_path / "l",
        "--dry_run",
        "true",
        "--",
        "python",
        "-m",
        "x",
        "--config",
        EMBEDDED,
        "--global_batch_utts",
        "64",
    )
    assert rc == 2 and err.startswith("launch: error: --global_batch_utts on the command line is 64")


def test_steps_per_pass_from_the_shape_file(tmp_path):
    shape = tmp_path / "feats_shape"
    shape.write_text("".join(f"u{i} {100 + i},80\n" for i in range(1000)))
    s = read_batch_settings(["--config", PRETRAIN, "--train_shape_file", str(shape), "--batch_size", "64",
                             "--accum_grad", "2", "--global_batch_utts", "128",
                             "--micro_batch_per_rank", "16"])  # fmt: skip
    data = data_size(s)
    assert data.utterances == 1000 and str(shape) in data.source
    assert data.numel == sum((100 + i) * 80 for i in range(1000))
    r = batch_arithmetic(s, Geometry("local", 0, 1, cpu_procs=4), data)
    assert not r.stops and not r.fatal
    assert (r.utts_per_step, r.ranks, r.per_rank, r.accum_grad) == (128, 4, 16, 2)
    assert (r.micro_batches_per_pass, r.steps_per_pass) == (15, 7)


# ---------------------------------------------------------------------------------------
# The report's text: one golden file


def _settings(**changes) -> BatchSettings:
    base = BatchSettings(
        config="conf/pretrain_conformer_bestrq.yaml", batch_type="sorted", batch_size=256,
        batch_bins=1_000_000, accum_grad=8, global_batch_utts=2048,
        global_batch_source="global_batch_utts in conf/pretrain_conformer_bestrq.yaml",
        micro_batch_per_rank=2, accept_global_batch=False, accum_no_sync=True, iterator_type="sharded",
        max_epoch=320, num_iters_per_epoch=10_000, train_shape_file=None, output_dir="exp/ssl_full",
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


_NO_GLOBAL = dict(
    global_batch_utts=None,
    micro_batch_per_rank=None,
    global_batch_source="global_batch_utts (ESPnet default)",
)
_FINETUNE = "conf/finetune_conformer_transformer.yaml"
# name -> (geometry, settings, data, accepted); launched when there is no problem or accepted.
_REPORTS = {
    "slurm 16 x 8, matches, data hours": (
        Geometry("slurm", 8, 16),
        _settings(),
        DataSize(144_000_000, "144,000,000 utterances (600000 h at an assumed mean of 15 s per utterance)"),
        False,
    ),
    "torchrun 2 hosts x 2 CPU processes, folded, no accum_no_sync, data utts": (
        Geometry("torchrun", 0, 2, cpu_procs=2, hosts=("h0", "h1"), master_port=29611),
        _settings(
            config=None,
            batch_type="folded",
            batch_size=20,
            accum_grad=2,
            accum_no_sync=False,
            iterator_type="sequence",
            max_epoch=40,
            num_iters_per_epoch=None,
            **_NO_GLOBAL,
        ),
        DataSize(12_345, "12,345 utterances (--data_utts)"),
        False,
    ),
    "local 1 process, numel, epochs without data": (
        Geometry("local", 0, 1),
        _settings(
            config=_FINETUNE,
            batch_type="numel",
            batch_bins=320_000,
            accum_grad=1,
            max_epoch=35,
            num_iters_per_epoch=100,
            **_NO_GLOBAL,
        ),
        None,
        False,
    ),
    "local 3 CPU processes, unequal split, accepted": (
        Geometry("local", 0, 1, cpu_procs=3),
        _settings(batch_size=16, iterator_type="sequence", micro_batch_per_rank=None),
        None,
        True,
    ),
    "local 4 GPUs, per-rank size not a divisor, accepted": (
        Geometry("local", 4, 1),
        _settings(micro_batch_per_rank=3, num_iters_per_epoch=None),
        DataSize(1_000, "1,000 utterances (dump/feats_shape)", numel=8_000_000),
        True,
    ),
    "local 2 CPU processes, sized per rank": (
        Geometry("local", 0, 1, cpu_procs=2),
        _settings(num_iters_per_epoch=None),
        None,
        False,
    ),
    "slurm 3 x 8, sharded, no equal split": (Geometry("slurm", 8, 3), _settings(), None, False),
    "sequence iterator, 3 ranks, right size but unequal": (
        Geometry("local", 0, 1, cpu_procs=3),
        _settings(iterator_type="sequence", micro_batch_per_rank=None),
        None,
        False,
    ),
    "slurm 64 x 8, fewer utterances than ranks": (Geometry("slurm", 8, 64), _settings(), None, False),
    "slurm 64 x 8, fewer utterances than ranks, no global batch": (
        Geometry("slurm", 8, 64),
        _settings(**_NO_GLOBAL),
        None,
        True,
    ),
    "slurm 2 x 4 CPU processes, bins with data and epochs, global batch": (
        Geometry("slurm", 0, 2, cpu_procs=4, master_port=1234),
        _settings(batch_type="length", micro_batch_per_rank=None, accum_grad=4),
        DataSize(1_000, "1,000 utterances (dump/feats_shape)", numel=8_000_000),
        False,
    ),
}


def _render_report(geometry, settings, data, accepted) -> str:
    arithmetic = batch_arithmetic(settings, geometry, data)
    report = dict(job_name="ssl_full", geometry=geometry, arithmetic=arithmetic, dry_run=True)
    if arithmetic.fatal or (arithmetic.stops and not accepted):
        return "\n".join(launch_report(**report) + ["--- stderr ---"] + refusal_messages(arithmetic))
    plan = build_plan(geometry, ["python", "-m", "espnet_ext.bin.ssl_train", "--config", "conf/x.yaml"],
                      log="exp/ssl_full/train.log", job_name="ssl_full", workdir="/recipe",
                      slurm_opts=["--partition=gpu", "--time=7-00:00:00"], num_workers=4)  # fmt: skip
    return "\n".join(launch_report(**report, plan=plan)).replace(sys.executable, "<python>")


def test_report_text_matches_the_golden_file():
    text = "".join(f"=== {name} ===\n{_render_report(*case)}\n\n" for name, case in _REPORTS.items())
    if os.environ.get("LAUNCH_GOLDEN_UPDATE"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_bad_input_is_named(capsys, tmp_path):
    cases = [
        (["--num_nodes", 2], "backend local runs on this machine only; --num_nodes 2"),
        (["--backend", "torchrun", "--num_nodes", 2, "--hosts", "a"], "needs one host per node: --num_nodes 2 but 1 host(s)"),
        (["--backend", "slurm", "--hosts", "a"], "--hosts is for the torchrun backend"),
        (["--ngpu", 2, "--cpu_procs", 2], "--cpu_procs 2 is for CPU training"),
        (["--backend", "slurm", "--slurm_opts", "--partition gpu"], "slurm option 'gpu' is not an option"),
        (["--master_port", 70000], "--master_port must be a TCP port"),
        (["--backend", "slurm", "--checkpoint_write_seconds", 0], "--checkpoint_write_seconds must be >= 1"),
    ]  # fmt: skip
    for extra, message in cases:
        rc, _, err = _launch(capsys, "--log", tmp_path / "l", "--dry_run", "true", *extra, *_ssl_cmd())
        assert rc == 2 and message in err, (extra, err)
    for cmd, message in [
        (["--config", str(tmp_path / "none.yaml")], "training config not found"),
        (["--config", PRETRAIN, "--ngpu", "1"], "the launcher sets --ngpu"),
        (["--config", PRETRAIN, "--dist_backend=gloo"], "the launcher sets --dist_backend"),
        (["--config", PRETRAIN, "--batch_size", "many"], "--batch_size on the command line: expected an integer, got 'many'"),
        (["--config", PRETRAIN, "--accum_grad", "0"], "--accum_grad on the command line: must be >= 1"),
        (["--config", PRETRAIN, "--batch_type", "bucket"], "unknown batch_type 'bucket'"),
    ]:  # fmt: skip
        rc, _, err = _launch(capsys, "--log", tmp_path / "l", "--dry_run", "true", "--", "python", *cmd)
        assert rc == 2 and message in err, (cmd, err)
    rc, _, err = _launch(capsys, "--log", tmp_path / "l", "--dry_run", "true")
    assert rc == 2 and "no training command" in err
    with pytest.raises(LaunchError, match="give --data_utts or --data_hours, not both"):
        data_size(read_batch_settings(["--config", PRETRAIN]), data_utts=5, data_hours=1.0)


@pytest.mark.slow
def test_defaults_match_espnets_parser():
    from espnet2.tasks.asr import ASRTask

    parser = ASRTask.get_parser()
    for key, value in ESPNET_DEFAULTS.items():
        assert parser.get_default(key) == value, key


def _source_cmd_sh(backend: str):
    script = f'cmd_backend={backend}; . ./cmd.sh && echo "$train_cmd|$decode_cmd|${{launch_cmd[*]}}"'
    return subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True)


def test_cmd_sh_backends():
    r = _source_cmd_sh("local")
    assert r.returncode == 0, r.stderr
    assert (
        r.stdout.strip()
        == "utils/run_local.sh|utils/run_local.sh|python -m espnet_ext.bin.launch --backend local"
    )
    r = _source_cmd_sh("slurm")
    train, decode, launch_cmd = r.stdout.strip().split("|")
    assert train.startswith("utils/run_slurm.sh") and decode.startswith("utils/run_slurm.sh")
    assert launch_cmd.startswith("python -m espnet_ext.bin.launch --backend slurm --slurm_opts")
    r = _source_cmd_sh("torchrun")
    train, decode, launch_cmd = r.stdout.strip().split("|")
    assert train == "utils/run_local.sh"
    assert launch_cmd.startswith("python -m espnet_ext.bin.launch --backend torchrun --remote_shell")
    r = _source_cmd_sh("pbs")
    assert r.returncode != 0 and "unknown cmd_backend 'pbs' (local, slurm, torchrun)" in r.stderr


def test_run_slurm_sh_submits_an_array_and_puts_one_job_under_srun(tmp_path):
    """utils/run_slurm.sh: JOB=a:b is one 'sbatch --wait --array=a-b' job; a single command is
    'srun <options> <job>'. Slurm is not on this machine: stand-ins on PATH record their
    arguments; sbatch runs the array script once per task with SLURM_ARRAY_TASK_ID set."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "srun").write_text(
        "#!/usr/bin/env bash\n"
        'echo "srun-args: $*" >> "$SRUN_RECORD"\n'
        'while [ $# -gt 0 ] && [[ $1 == -* ]]; do shift; done\nexec "$@"\n'
    )
    (bindir / "sbatch").write_text(
        "#!/usr/bin/env bash\n"
        'echo "sbatch-args: $*" >> "$SRUN_RECORD"\n'
        'script=${@: -1}; range=$(sed -n "s/^#SBATCH --array=//p" "$script"); out=$(sed -n "s/^#SBATCH --output=//p" "$script")\n'
        'rc=0; for i in $(seq ${range%-*} ${range#*-}); do SLURM_ARRAY_TASK_ID=$i bash "$script" > "${out//%a/$i}" 2>&1 || rc=$?; done; exit $rc\n'
    )
    for f in bindir.iterdir():
        f.chmod(0o755)
    record = tmp_path / "record"
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "SRUN_RECORD": str(record)}
    r = subprocess.run(
        [str(ROOT / "utils" / "run_slurm.sh"), "--gpu", "1", "--partition=cpu", "JOB=1:2",
         str(tmp_path / "log" / "decode.JOB.log"), "bash", "-c", "echo job JOB; exit 0"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    for i in (1, 2):
        log = (tmp_path / "log" / f"decode.{i}.log").read_text()
        assert f"job {i}" in log and "# Accounting: status=0" in log
    script = (tmp_path / "log" / "decode.array.sbatch").read_text()
    for line in ("#SBATCH --array=1-2", f"#SBATCH --output={tmp_path}/log/decode.%a.log", "#SBATCH --gres=gpu:1",
                 "#SBATCH --partition=cpu"):  # fmt: skip
        assert line in script.splitlines(), line
    assert subprocess.run(["bash", "-n", str(tmp_path / "log" / "decode.array.sbatch")]).returncode == 0
    assert record.read_text().splitlines() == [f"sbatch-args: --wait {tmp_path}/log/decode.array.sbatch"]

    r = subprocess.run(
        [str(ROOT / "utils" / "run_slurm.sh"), "--partition=cpu", "JOB=1:2", str(tmp_path / "f.JOB.log"),
         "bash", "-c", "exit $((JOB - 1))"], capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 1 and "1 of 2 array tasks failed" in r.stderr and "f.2.log" in r.stderr

    record.unlink()
    r = subprocess.run(
        [
            str(ROOT / "utils" / "run_slurm.sh"),
            "--num_threads",
            "4",
            "--mem=2G",
            str(tmp_path / "one.log"),
            "echo",
            "one",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert record.read_text().splitlines() == [
        "srun-args: --ntasks=1 --nodes=1 --cpus-per-task=4 --mem=2G echo one"
    ]
    assert "one" in (tmp_path / "one.log").read_text()


def _recipe_configs(tmp_path):
    """The full-scale configs. ESPnet's SSL task defaults to a linear pre-encoder that the
    recipe's check_config rejects; until conf/pretrain_conformer_bestrq.yaml turns it off
    (preencoder: null, as the embedded config does) the test uses a copy that does."""
    text = Path(PRETRAIN).read_text()
    if not re.search(r"^preencoder:", text, flags=re.M):
        copy = tmp_path / "pretrain_conformer_bestrq.yaml"
        copy.write_text(text + "\npreencoder: null\n")
        return str(copy), FINETUNE
    return PRETRAIN, FINETUNE


@pytest.mark.slow
def test_recipe_dry_run_16x8_prints_all_three_launches_and_runs_nothing(tmp_path):
    pretrain, finetune = _recipe_configs(tmp_path)
    expdir = tmp_path / "exp"
    cmd = [
        "./run.sh",
        "--ngpu",
        "8",
        "--num_nodes",
        "16",
        "--cmd_backend",
        "slurm",
        "--dry_run",
        "true",
        "--pretrain_config",
        pretrain,
        "--finetune_config",
        finetune,
        "--nbpe",
        "5000",
        "--pretrain_data_hours",
        "600000",
        "--finetune_data_hours",
        "100000",
        "--expdir",
        str(expdir),
        "--datadir",
        str(tmp_path / "data"),
        "--dumpdir",
        str(tmp_path / "dump"),
    ]
    r = subprocess.run(cmd + ["--lm_config", "conf/train_lm.yaml"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert out.count("2048 utterances = 128 ranks x 2 per micro-batch x 8 accumulation steps") == 2
    assert "70,312 optimizer steps per pass" in out and "11,718 optimizer steps per pass" in out
    assert "python -m espnet_ext.bin.ssl_train" in out and "python -m espnet_ext.bin.asr_train" in out
    assert re.search(r"--init_param \S+/valid\.loss\.best\.pth:encoder:encoder", out)
    # Stage 3's LM trains on the same 128 ranks: 4096 sentences per update, 32 per rank.
    assert "python -m espnet_ext.bin.lm_train" in out
    assert (
        "4096 utterances = 128 ranks x 32 per micro-batch x 1 accumulation step" in out
    )  # sorted (sharded): exact
    assert out.count("sbatch --wait") == 3
    assert not expdir.exists() and not (tmp_path / "data").exists()
    assert "Stage 1" not in out + r.stderr

    # The embedded corpus's CPU LM config cannot feed 128 ranks: refused before anything runs.
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "batch_size 64 is smaller than the 128 ranks" in r.stderr
    assert not expdir.exists() and not (tmp_path / "data").exists()


@pytest.mark.slow
def test_recipe_refuses_a_launch_that_changes_the_global_batch_before_stage_1(tmp_path):
    pretrain, finetune = _recipe_configs(tmp_path)
    r = subprocess.run(
        ["./run.sh", "--ngpu", "8", "--num_nodes", "3", "--cmd_backend", "slurm",
         "--pretrain_config", pretrain, "--finetune_config", finetune, "--nbpe", "5000",
         "--expdir", str(tmp_path / "exp"), "--datadir", str(tmp_path / "data"), "--dumpdir", str(tmp_path / "dump")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode != 0
    assert "2048 is not a multiple of 24 ranks, so no equal per-rank micro-batch gives it" in r.stderr
    assert "stage 4's launch is not valid" in r.stdout + r.stderr
    assert "Stage 1" not in r.stdout + r.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "exp").exists()
