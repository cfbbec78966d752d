"""Split the keys of an scp file into N key files for N parallel jobs.

    python -m espnet_ext.bin.split_scp dump/test_clean/feats.scp 4 DIR/keys
writes DIR/keys.1 ... DIR/keys.4, contiguous and as even as possible (sizes differ by at
most one). Asking for more parts than keys is an error, as in Kaldi's split_scp.pl.
"""

import sys
from pathlib import Path

from espnet_ext.utils.kaldi_table import read_keys


def split_keys(scp: Path, n: int, prefix: Path) -> None:
    keys = read_keys(scp)
    if n < 1:
        raise ValueError(f"number of parts must be >= 1, got {n}")
    if n > len(keys):
        raise ValueError(f"{scp}: cannot split {len(keys)} keys into {n} parts")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    base, extra = divmod(len(keys), n)
    start = 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        Path(f"{prefix}.{i + 1}").write_text("".join(k + "\n" for k in keys[start : start + size]))
        start += size


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    split_keys(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
