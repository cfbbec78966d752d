"""A tiny untrained ASR model with espnet_ext's plugins (logmel frontend, ssl_conformer
encoder), laid out as an ESPnet experiment folder and packed with stock ``espnet2.bin.pack``:
what the stock-entry-point and model-card tests decode with. Random weights: the text it
outputs is meaningless, decoding has to run."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

CONFIG = {
    "frontend": "logmel",
    "frontend_conf": {"fs": 16000, "n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 80},
    "normalize": None,
    "encoder": "ssl_conformer",
    "encoder_conf": {
        "output_size": 32,
        "attention_heads": 2,
        "linear_units": 64,
        "num_blocks": 1,
        "cnn_module_kernel": 3,
        "subsampling_channels": 8,
    },
    "decoder": "transformer",
    "decoder_conf": {"attention_heads": 2, "linear_units": 64, "num_blocks": 1},
    "model_conf": {"ctc_weight": 0.3},
}
TOKENS = ["<blank>", "<unk>", "A", "B", "C", "D", "E", "<space>", "<sos/eos>"]


def build(work: Path) -> Path:
    """<work>/exp/asr_tiny/{config.yaml, valid.acc.ave.pth}; returns the experiment folder."""
    import torch
    from espnet2.tasks.asr import ASRTask

    import espnet_ext

    espnet_ext.register()
    exp = work / "exp" / "asr_tiny"
    exp.mkdir(parents=True, exist_ok=True)
    (work / "tiny.yaml").write_text(yaml.safe_dump(CONFIG))
    tokens = work / "tokens.txt"
    tokens.write_text("\n".join(TOKENS) + "\n")
    args = ASRTask.get_parser().parse_args(
        [
            "--config",
            str(work / "tiny.yaml"),
            "--token_list",
            str(tokens),
            "--token_type",
            "char",
            "--output_dir",
            str(exp),
        ]
    )
    torch.manual_seed(0)
    model = ASRTask.build_model(args)  # turns args.token_list into the list, as training does
    torch.save(model.state_dict(), exp / "valid.acc.ave.pth")
    cfg = vars(args)
    cfg["config"] = str(work / "tiny.yaml")
    with open(exp / "config.yaml", "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    return exp


def pack(exp: Path, extra=()) -> Path:
    """Stock ``python -m espnet2.bin.pack asr`` in a fresh process; returns the zip."""
    out = exp / "packed_model.zip"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet2.bin.pack",
            "asr",
            "--asr_train_config",
            "exp/asr_tiny/config.yaml",
            "--asr_model_file",
            "exp/asr_tiny/valid.acc.ave.pth",
            *extra,
            "--outpath",
            "exp/asr_tiny/packed_model.zip",
        ],
        cwd=exp.parent.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    return out


def write_wav(path: Path, seconds: float = 1.0) -> Path:
    import soundfile

    t = np.arange(int(16000 * seconds)) / 16000
    x = 0.1 * np.sin(2 * math.pi * 440 * t) + 0.01 * np.random.default_rng(0).standard_normal(len(t))
    soundfile.write(path, x.astype(np.float32), 16000)
    return path
