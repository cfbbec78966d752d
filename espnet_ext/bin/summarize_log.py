"""Print one line about a finished ESPnet training: the last epoch's results and its time.

python -m espnet_ext.bin.summarize_log exp/ssl_x/train.log
"""

import re
import sys
from pathlib import Path

_KEEP = re.compile(
    r"\b(loss|acc|cer|wer|cer_ctc|loss_att|loss_ctc|bestrq_\w+|lr_\d+|train_time|time|total_count)=([^,\s]+)"
)


def summarize(log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    epochs = re.findall(r"(\d+)epoch results: (.*)", text)
    if not epochs:
        return f"{log}: no epoch results"
    epoch, line = epochs[-1]
    parts = []
    for section in re.split(r"(?=\[(?:train|valid)\])", line):
        m = re.match(r"\[(train|valid)\]", section)
        if not m:
            continue
        kv = ", ".join(f"{k}={v}" for k, v in _KEEP.findall(section))
        parts.append(f"[{m.group(1)}] {kv}")
    return f"epoch {epoch}: " + " ".join(parts)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(summarize(Path(sys.argv[1])))
