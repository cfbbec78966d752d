"""Print one line about a finished ESPnet training: the last epoch's results and its time.

python -m espnet_ext.bin.summarize_log exp/ssl_x/train.log
"""

import re
import sys
from pathlib import Path

_KEEP = re.compile(
    r"\b(loss|acc|cer|wer|cer_ctc|loss_att|loss_ctc|bestrq_\w+|lr_\d+|train_time|total_count)=([^,\s]+)"
    r"|\b(time)=([^=]+?)(?=, \w+=|, \[|$)"  # a humanfriendly timespan: '1 minute and 2.5 seconds'
)
_SPAN = re.compile(r"(\d+(?:\.\d+)?) (week|day|hour|minute|second|millisecond)s?\b")
_UNIT = {"week": 604800.0, "day": 86400.0, "hour": 3600.0, "minute": 60.0, "second": 1.0, "millisecond": 1e-3}


def timespan_seconds(text: str) -> float:
    """Seconds of a timespan as ESPnet's reporter writes it (humanfriendly):
    '1 hour, 2 minutes and 3.5 seconds' -> 3723.5."""
    return sum(float(n) * _UNIT[u] for n, u in _SPAN.findall(text))


def _pairs(section: str):
    for key, value, tkey, tvalue in _KEEP.findall(section):
        yield (key, value) if key else (tkey, f"{timespan_seconds(tvalue):.1f}s")


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
        kv = ", ".join(f"{k}={v}" for k, v in _pairs(section))
        parts.append(f"[{m.group(1)}] {kv}")
    return f"epoch {epoch}: " + " ".join(parts)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(summarize(Path(sys.argv[1])))
