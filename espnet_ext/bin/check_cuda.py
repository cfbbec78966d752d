"""Check, before a GPU run, that this machine's NVIDIA driver runs the installed torch build.

    python -m espnet_ext.bin.check_cuda --ngpu N [--cmd_backend local|slurm|torchrun] [--dry_run false]

``--ngpu 0``: nothing is checked (no nvidia-smi call). Otherwise the driver version
(nvidia-smi, else /proc/driver/nvidia/version) is compared with ``torch.version.cuda``
through NVIDIA's minimum-driver tables (espnet_ext/cuda_check.py). A mismatch prints both
versions and how to install a matching build (``TORCH_INDEX_URL``, README) and exits 1;
with ``--dry_run true`` or ``SKIP_CUDA_CHECK=1`` it is printed as information and exits 0.
With a backend other than local, the GPUs may be on other machines, so a missing driver here
is only a note.
"""

import argparse
import os
import sys
from typing import List, Optional

from espnet_ext import cuda_check as C


def _bool(s: str) -> bool:
    if s not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"takes true or false, got {s!r}")
    return s == "true"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ngpu", type=int, required=True, help="GPUs per node (0: CPU, no check)")
    p.add_argument("--cmd_backend", default="local", help="local: the GPUs are on this machine")
    p.add_argument("--dry_run", type=_bool, default=False, help="report only, never fail")
    a = p.parse_args(argv)
    if a.ngpu <= 0:
        print(f"check_cuda: {C.check(a.ngpu, None, None, '').message}")
        return 0
    driver, source = C.read_driver_version()
    torch_cuda, torch_version = C.installed_torch()
    r = C.check(
        a.ngpu,
        driver,
        torch_cuda,
        torch_version,
        index_url=os.environ.get(C.INDEX_ENV) or None,
        driver_here=a.cmd_backend in ("", "local"),
        driver_source=source,
    )
    skip = os.environ.get(C.SKIP_ENV, "") not in ("", "0")
    if r.ok:
        print(f"check_cuda: {r.message}")
        return 0
    if a.dry_run or skip:
        why = "dry run" if a.dry_run else f"{C.SKIP_ENV}={os.environ[C.SKIP_ENV]}"
        print(f"check_cuda: would stop the run ({why}, not stopping):\n  {r.message}")
        return 0
    print(
        f"check_cuda: Error: {r.message}\n  ({C.SKIP_ENV}=1 reports this without stopping.)", file=sys.stderr
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
