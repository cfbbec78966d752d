"""The launch-time check of the NVIDIA driver against the installed torch build
(espnet_ext/cuda_check.py, python -m espnet_ext.bin.check_cuda), with a GPU machine's inputs:
nvidia-smi and /proc output as the driver prints them, torch.version.cuda as wheels report it."""

import os
import subprocess
from pathlib import Path

import pytest

from espnet_ext import cuda_check as C
from espnet_ext.bin import check_cuda

ROOT = Path(__file__).resolve().parents[1]

PROC_PROPRIETARY = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 "
    "01:15:15 UTC 2023\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
)
PROC_OPEN = (
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build  "
    "(dvs-builder@U16-I3-B03-4-3)  Sun Jul 27 07:09:19 UTC 2025\nGCC version:  gcc 13\n"
)


def test_parsers():
    assert C.parse_nvidia_smi("580.65.06\n580.65.06\n") == (580, 65, 6)
    assert C.parse_nvidia_smi("550.54.14\n545.23.06\n") == (545, 23, 6)  # the lowest
    assert C.parse_nvidia_smi("") is None
    assert C.parse_nvidia_smi("No devices were found\n") is None
    assert C.parse_proc_version(PROC_PROPRIETARY) == (535, 104, 5)  # not gcc's 12.2.0, not x86_64
    assert C.parse_proc_version(PROC_OPEN) == (580, 65, 6)
    assert C.parse_proc_version("garbage") is None
    assert C.parse_cuda("13.0") == (13, 0) and C.parse_cuda("12.6") == (12, 6)
    assert C.parse_cuda(None) is None
    assert C.fmt((580, 65, 6)) == "580.65.06" and C.fmt((570, 26)) == "570.26"


def test_minimum_drivers_follow_minor_version_compatibility():
    # A CUDA 12.x build runs on any driver >= 525.60.13 (minor-version compatibility);
    # full support needs the toolkit's own driver.
    assert C.required_driver((12, 6)) == ((525, 60, 13), (560, 28, 3))
    assert C.required_driver((12, 0)) == ((525, 60, 13), (525, 60, 13))
    assert C.required_driver((13, 0)) == ((580,), (580, 65, 6))
    assert C.required_driver((11, 0)) == ((450, 36, 6), (450, 36, 6))  # below the 11.x compat min
    assert C.required_driver((12, 7)) == ((525, 60, 13), None)  # a minor not in the table
    assert C.required_driver((14, 0)) == (None, None)
    assert C.newest_cuda_for((550, 54, 14)) == ((12, 4), 12)
    assert C.newest_cuda_for((580, 82, 7)) == ((13, 0), 13)
    assert C.newest_cuda_for((400, 1)) == (None, None)


def test_ngpu_0_is_a_no_op():
    r = C.check(0, None, None, "2.14.1+cpu")
    assert r.ok and r.level == "ok"


def test_matching_driver():
    r = C.check(8, (580, 65, 6), "13.0", "2.14.1+cu130", driver_source="nvidia-smi")
    assert r.level == "ok" and "580.65.06" in r.message and "13.0" in r.message
    assert C.check(8, (590, 44, 1), "12.6", "2.14.1+cu126").level == "ok"  # newer drivers run older builds


def test_minor_version_compatibility_is_a_note_not_an_error():
    # CUDA 12.6 build on a 12.2-era driver: runs through minor-version compatibility.
    r = C.check(1, (535, 104, 5), "12.6", "2.14.1+cu126")
    assert r.ok and r.level == "note" and "minor-version" in r.message and "560.28.03" in r.message
    # CUDA 13.0 build on the first 580 driver of the 13.x line.
    assert C.check(1, (580, 13, 1), "13.0", "2.14.1+cu130").ok


def test_too_old_driver_names_both_versions_and_the_install_command():
    r = C.check(8, (535, 104, 5), "13.0", "2.14.1+cu130", index_url=None)
    assert not r.ok and r.level == "error"
    m = r.message
    assert "535.104.05" in m and "2.14.1+cu130" in m and "CUDA 13.0" in m and ">= 580" in m
    assert "up to 12.2" in m and "any CUDA 12.x" in m  # what this driver does run
    assert "TORCH_INDEX_URL" in m and "/whl/cu12" in m and "tools/setup_env.sh" in m
    # The index comes from the environment when set; nothing is fetched.
    r = C.check(8, (535, 104, 5), "13.0", "2.14.1+cu130", index_url="https://mirror.example/whl/cu126")
    assert "TORCH_INDEX_URL=https://mirror.example/whl/cu126 tools/setup_env.sh" in r.message
    # Too old even for minor-version compatibility of 12.x.
    r = C.check(2, (520, 61, 5), "12.6", "2.14.1+cu126")
    assert not r.ok and ">= 525.60.13" in r.message and "any CUDA 11.x" in r.message


def test_no_driver_found():
    r = C.check(
        2, None, "13.0", "2.14.1+cu130", driver_source="no nvidia-smi; no /proc/driver/nvidia/version"
    )
    assert not r.ok and "no NVIDIA driver" in r.message and "--ngpu 0" in r.message
    # Slurm from a login node: the GPUs (and the driver) are on the job's nodes.
    r = C.check(8, None, "13.0", "2.14.1+cu130", driver_here=False)
    assert r.ok and r.level == "note" and ">= 580" in r.message


def test_cpu_only_torch_with_gpus():
    r = C.check(4, (580, 65, 6), None, "2.14.1+cpu")
    assert (
        not r.ok and "CPU-only" in r.message and "TORCH_INDEX_URL" in r.message and "/whl/cu13" in r.message
    )
    assert not C.check(4, None, None, "2.14.1+cpu", driver_here=False).ok  # no node can help
    assert C.check(0, None, None, "2.14.1+cpu").ok


def test_unknown_cuda_major_is_not_blocked():
    r = C.check(1, (700, 1), "14.0", "3.0.0+cu140")
    assert r.ok and r.level == "note"


def _runner(returncode, stdout="", stderr="", missing=False):
    def run(cmd, **kw):
        assert cmd[0] == "nvidia-smi"
        if missing:
            raise FileNotFoundError(cmd[0])
        return subprocess.CompletedProcess(cmd, returncode, stdout, stderr)

    return run


def test_read_driver_version(tmp_path):
    proc = tmp_path / "version"
    assert C.read_driver_version(_runner(0, "580.65.06\n"), proc) == ((580, 65, 6), "nvidia-smi")
    proc.write_text(PROC_OPEN)
    v, src = C.read_driver_version(
        _runner(9, stderr="NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"),
        proc,
    )
    assert v == (580, 65, 6) and src == str(proc)
    v, src = C.read_driver_version(_runner(0, missing=True), tmp_path / "absent")
    assert v is None and "no nvidia-smi" in src and "absent" in src


def test_entry_point(monkeypatch, capsys):
    def no_driver_lookup(*a, **k):
        raise AssertionError("--ngpu 0 must not look for a driver")

    monkeypatch.setattr(C, "read_driver_version", no_driver_lookup)
    assert check_cuda.main(["--ngpu", "0"]) == 0

    monkeypatch.setattr(C, "read_driver_version", lambda: ((535, 104, 5), "nvidia-smi"))
    monkeypatch.setattr(C, "installed_torch", lambda: ("13.0", "2.14.1+cu130"))
    monkeypatch.delenv("SKIP_CUDA_CHECK", raising=False)
    monkeypatch.setenv("TORCH_INDEX_URL", "https://mirror.example/whl/cu126")
    assert check_cuda.main(["--ngpu", "8"]) == 1
    err = capsys.readouterr().err
    assert "535.104.05" in err and "TORCH_INDEX_URL=https://mirror.example/whl/cu126" in err
    assert check_cuda.main(["--ngpu", "8", "--dry_run", "true"]) == 0  # information only
    assert "would stop the run" in capsys.readouterr().out
    monkeypatch.setenv("SKIP_CUDA_CHECK", "1")
    assert check_cuda.main(["--ngpu", "8"]) == 0


def test_installed_torch_here():
    # The pinned wheel (PyPI's torch==2.14.1) is a CUDA 13 build, hence the driver >= 580.
    cuda, version = C.installed_torch()
    assert cuda is None or C.parse_cuda(cuda) is not None
    print(f"torch {version}, torch.version.cuda {cuda}")


@pytest.mark.slow
def test_recipe_calls_the_check_only_with_gpus(tmp_path):
    """The default run (--ngpu 0) never calls nvidia-smi; with --ngpu 1 a dry run reports a
    mismatch as information. A fake nvidia-smi first on PATH records its calls."""
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    calls = tmp_path / "calls"
    fake.write_text(f"#!/bin/sh\necho called >> {calls}\necho 535.104.05\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    env.pop("SKIP_CUDA_CHECK", None)
    dirs = [f"--{d}dir" for d in ("data", "dump", "exp")]
    args = [x for d in dirs for x in (d, str(tmp_path / d))]
    run = lambda *extra: subprocess.run(  # noqa: E731
        ["./run.sh", "--dry_run", "true", *args, *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    r = run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert not calls.exists() and "check_cuda" not in r.stdout + r.stderr
    r = run("--ngpu", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert calls.exists() and "would stop the run" in r.stdout and "535.104.05" in r.stdout
    assert not any((tmp_path / d).exists() for d in ("data", "dump", "exp"))
