"""Can this machine's NVIDIA driver run the installed torch build? Checked before a GPU run.

A torch wheel carries its own CUDA runtime (``torch.version.cuda``, e.g. "13.0" for the
pinned ``torch==2.14.1`` from PyPI); only the kernel driver comes from the machine. A driver
that is too old for the build makes ``torch.cuda.is_available()`` quietly return False, and
the training would then fail (or run on the CPU) hours into a queued job. So the recipe
compares the two at launch, with ``--ngpu > 0`` only (``--ngpu 0`` never looks for a driver),
and a mismatch stops with both versions and how to install a matching torch build.

The functions here are pure (text in, values or a :class:`Result` out); only
:func:`read_driver_version` and :func:`installed_torch` look at the machine, and
``python -m espnet_ext.bin.check_cuda`` is the command-line entry that ``ssl_asr.sh`` calls.

Compatibility rule (NVIDIA, "CUDA Compatibility" and the CUDA Toolkit Release Notes):
a build for CUDA X.Y runs on a driver >= the driver shipped with toolkit X.Y (table 3 of the
release notes, "CUDA Toolkit and Corresponding Driver Versions") or, through minor-version
compatibility, on any driver >= the minimum of major X (table 2, "CUDA Toolkit and Minimum
Required Driver Version for CUDA Minor Version Compatibility"), e.g. a CUDA 12.6 build on
driver 525.60.13. Under minor-version compatibility, features that need a newer driver (and
JIT compilation of PTX newer than the driver) are unavailable, which is reported as a note,
not an error: PyTorch's wheels ship compiled kernels and run there.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

Version = Tuple[int, ...]

# Linux x86_64 figures from NVIDIA's CUDA Toolkit Release Notes (see the module docstring).
# Table 2: minimum driver of each CUDA major for minor-version compatibility. NVIDIA lists
# 13.x as ">= 580" (no patch level), 12.x as ">= 525.60.13", 11.x as ">= 450.80.02".
MINOR_COMPAT_MIN_DRIVER: dict[int, Version] = {
    11: (450, 80, 2),
    12: (525, 60, 13),
    13: (580,),
}
# Table 3: the driver each toolkit release (its first GA) shipped with, i.e. full support.
TOOLKIT_DRIVER: dict[Tuple[int, int], Version] = {
    (11, 0): (450, 36, 6),
    (11, 1): (455, 23),
    (11, 2): (460, 27, 3),
    (11, 3): (465, 19, 1),
    (11, 4): (470, 42, 1),
    (11, 5): (495, 29, 5),
    (11, 6): (510, 39, 1),
    (11, 7): (515, 43, 4),
    (11, 8): (520, 61, 5),
    (12, 0): (525, 60, 13),
    (12, 1): (530, 30, 2),
    (12, 2): (535, 54, 3),
    (12, 3): (545, 23, 6),
    (12, 4): (550, 54, 14),
    (12, 5): (555, 42, 2),
    (12, 6): (560, 28, 3),
    (12, 8): (570, 26),
    (12, 9): (575, 51, 3),
    (13, 0): (580, 65, 6),
    (13, 1): (590, 44, 1),
}

INDEX_ENV = "TORCH_INDEX_URL"  # where a matching torch build is installed from (README)
SKIP_ENV = "SKIP_CUDA_CHECK"  # 1: report a mismatch but do not stop (README)


def fmt(v: Optional[Sequence[int]]) -> str:
    """(580, 65, 6) -> "580.65.06" (driver style: minor parts 2 digits); None -> "none"."""
    if v is None:
        return "none"
    return ".".join([str(v[0])] + [f"{p:02d}" for p in v[1:]])


def parse_version(text: Optional[str]) -> Optional[Version]:
    """The first dotted number in ``text`` ("580.65.06" -> (580, 65, 6)); None if none."""
    if not text:
        return None
    m = re.search(r"\d+(?:\.\d+)+", text)
    return tuple(int(p) for p in m.group(0).split(".")) if m else None


def parse_nvidia_smi(stdout: str) -> Optional[Version]:
    """Driver version from ``nvidia-smi --query-gpu=driver_version --format=csv,noheader``
    (one line per GPU, all the same driver); the lowest if they differ, None if none."""
    found = [v for v in (parse_version(ln) for ln in stdout.splitlines()) if v is not None]
    return min(found) if found else None


def parse_proc_version(text: str) -> Optional[Version]:
    """Driver version from /proc/driver/nvidia/version, whose first line reads e.g.
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 ..." or
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build ..."."""
    m = re.search(r"NVRM version:.*?\bModule\b(?:\s+for\s+\S+)?\s+(\d+(?:\.\d+)+)", text)
    return parse_version(m.group(1)) if m else None


def parse_cuda(text: Optional[str]) -> Optional[Tuple[int, int]]:
    """``torch.version.cuda`` ("13.0", "12.6", None for a CPU-only build) -> (13, 0) / None."""
    v = parse_version(text)
    if v is None:
        return None
    return (v[0], v[1] if len(v) > 1 else 0)


def required_driver(cuda: Tuple[int, int]) -> Tuple[Optional[Version], Optional[Version]]:
    """(minimum driver that runs a CUDA ``cuda`` build, driver with full support of it).

    The minimum is the lower of the toolkit's own driver and the major's minor-version
    compatibility minimum (for 11.0, the toolkit's is lower). Either is None when NVIDIA's
    tables above do not list it (an unknown major: nothing can be said)."""
    full = TOOLKIT_DRIVER.get(cuda)
    compat = MINOR_COMPAT_MIN_DRIVER.get(cuda[0])
    if full is None and compat is None:
        return None, None
    known = [v for v in (full, compat) if v is not None]
    return min(known), full


def newest_cuda_for(driver: Version) -> Tuple[Optional[Tuple[int, int]], Optional[int]]:
    """(newest CUDA X.Y this driver fully supports, newest major it runs by minor-version
    compatibility); None where the tables give none."""
    full = [c for c, d in TOOLKIT_DRIVER.items() if driver >= d]
    compat = [m for m, d in MINOR_COMPAT_MIN_DRIVER.items() if driver >= d]
    return (max(full) if full else None), (max(compat) if compat else None)


@dataclass(frozen=True)
class Result:
    """``level``: "ok" (nothing to say, or all fine), "note" (runs; worth knowing) or "error"
    (the run would not get its GPUs). ``message`` is for the log, several lines."""

    level: str
    message: str

    @property
    def ok(self) -> bool:
        return self.level != "error"


def _install_hint(
    cuda_major: Optional[int], index_url: Optional[str], driver_needed: Optional[Version] = None
) -> str:
    """How to get a torch build that runs: the index from the environment, or its pattern."""
    tag = f"cu{cuda_major}X" if cuda_major is not None else "cuXYZ"
    build = f"a torch build for CUDA {cuda_major}.x" if cuda_major is not None else "a CUDA build of torch"
    url = index_url or f"<PyTorch wheel index ending in /whl/{tag}, e.g. .../whl/cu126 for CUDA 12.6>"
    src = "from the environment" if index_url else "unset"
    driver = f"update the NVIDIA driver (>= {fmt(driver_needed)}), or " if driver_needed else ""
    return (
        f"Fix: {driver}install {build} from its wheel index (TORCH_INDEX_URL, {src}):\n"
        f"    TORCH_INDEX_URL={url} tools/setup_env.sh\n"
        f"  which re-installs the pinned torch and torchaudio from that index "
        f'(README "A torch build for your driver").'
    )


def check(
    ngpu: int,
    driver: Optional[Version],
    torch_cuda: Optional[str],
    torch_version: str,
    *,
    index_url: Optional[str] = None,
    driver_here: bool = True,
    driver_source: str = "",
) -> Result:
    """Compare the driver with the torch build for a run with ``ngpu`` GPUs per node.

    ``driver``: the driver version found (None: no driver on this machine);
    ``torch_cuda``/``torch_version``: ``torch.version.cuda`` and ``torch.__version__``;
    ``index_url``: the ``TORCH_INDEX_URL`` of the environment (None/"" when unset);
    ``driver_here``: False when the GPUs are on other machines (a Slurm job from a login
    node): then a missing driver is only a note. ``ngpu`` 0: nothing to check."""
    if ngpu <= 0:
        return Result("ok", "--ngpu 0: CPU run, no CUDA check")
    cuda = parse_cuda(torch_cuda)
    build = f"torch {torch_version}" + (
        f" (a CUDA {cuda[0]}.{cuda[1]} build)" if cuda else " (a CPU-only build: torch.version.cuda is None)"
    )
    src = f" ({driver_source})" if driver_source else ""
    if driver is None and driver_here:
        return Result(
            "error",
            (
                f"--ngpu {ngpu} but no NVIDIA driver was found on this machine{src}.\n"
                f"  Installed: {build}.\n"
                f"  Run on a machine with NVIDIA GPUs and their driver, or with --ngpu 0 on the CPU."
            ),
        )
    compat_major = newest_cuda_for(driver)[1] if driver is not None else None
    if cuda is None:
        seen = f"NVIDIA driver {fmt(driver)}{src}" if driver is not None else f"no driver here{src}"
        return Result(
            "error",
            (
                f"--ngpu {ngpu} but the installed {build} cannot use GPUs ({seen}).\n  "
                + _install_hint(compat_major, index_url)
            ),
        )
    if driver is None:
        return Result(
            "note",
            (
                f"no NVIDIA driver on this machine{src}; the GPUs are on the job's nodes, whose "
                f"driver must be >= {fmt(required_driver(cuda)[0])} for {build}"
            ),
        )
    need, full = required_driver(cuda)
    if need is None:
        return Result(
            "note",
            (
                f"NVIDIA driver {fmt(driver)}{src}, {build}: CUDA {cuda[0]}.x is not in this check's "
                f"table of NVIDIA minimum drivers (espnet_ext/cuda_check.py); not checked"
            ),
        )
    if driver < need:
        full_cuda, _ = newest_cuda_for(driver)
        runs = (
            "no CUDA version this check knows"
            if compat_major is None
            else f"CUDA builds up to {full_cuda[0]}.{full_cuda[1]}, and any CUDA {compat_major}.x "
            f"build through minor-version compatibility"
        )
        return Result(
            "error",
            (
                f"NVIDIA driver {fmt(driver)}{src} is too old for the installed {build}: CUDA "
                f"{cuda[0]}.{cuda[1]} needs driver >= {fmt(need)}"
                + (f" ({fmt(full)} for full support)" if full and full != need else "")
                + ".\n"
                f"  This driver runs {runs}.\n  " + _install_hint(compat_major, index_url, full or need)
            ),
        )
    if full is not None and driver < full:
        return Result(
            "note",
            (
                f"NVIDIA driver {fmt(driver)}{src}, {build}: runs through CUDA minor-version "
                f"compatibility (driver >= {fmt(need)}); full support of CUDA {cuda[0]}.{cuda[1]} "
                f"needs >= {fmt(full)} (PTX JIT and newer-driver features are unavailable)"
            ),
        )
    extra = (
        ""
        if full is not None
        else f" (CUDA {cuda[0]}.{cuda[1]} not in the table; major {cuda[0]} needs >= {fmt(need)})"
    )
    return Result("ok", f"NVIDIA driver {fmt(driver)}{src} runs {build}{extra}")


# ---- the machine (thin; everything above is pure) ----

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def read_driver_version(
    run: Runner = subprocess.run, proc_file: Path = Path("/proc/driver/nvidia/version")
) -> Tuple[Optional[Version], str]:
    """(driver version, where it came from / why none): nvidia-smi first, then /proc."""
    why = []
    try:
        r = run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        v = parse_nvidia_smi(r.stdout) if r.returncode == 0 else None
        if v is not None:
            return v, "nvidia-smi"
        msg = (r.stderr or r.stdout).strip().splitlines()
        why.append(f"nvidia-smi exit {r.returncode}" + (f": {msg[0]}" if msg else ""))
    except FileNotFoundError:
        why.append("no nvidia-smi")
    except (OSError, subprocess.TimeoutExpired) as e:
        why.append(f"nvidia-smi: {e}")
    try:
        v = parse_proc_version(proc_file.read_text())
        if v is not None:
            return v, str(proc_file)
        why.append(f"{proc_file}: no version")
    except OSError:
        why.append(f"no {proc_file}")
    return None, "; ".join(why)


def installed_torch() -> Tuple[Optional[str], str]:
    """(``torch.version.cuda``, ``torch.__version__``) of the environment's torch."""
    import torch

    return torch.version.cuda, torch.__version__
