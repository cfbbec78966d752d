"""Check the recipe's configs before any stage runs, so a bad config fails in seconds.

    python -m espnet_ext.bin.check_config --pretrain_config A.yaml --finetune_config B.yaml \
        --decode_config C.yaml [--init_from_pretrained true] [--lm_config D.yaml]

Checks: each file is a YAML mapping; the pre-training and fine-tuning configs pass ESPnet's
own argument parsers for the SSL and ASR tasks (unknown keys, unknown plugin names) and
their models can be built from them (wrong constructor arguments, invalid sizes), on the
``meta`` device so that a full-scale config allocates nothing; the fine-tuning encoder has
the same type and the same parameter shapes as the pre-trained one (otherwise the
pre-trained weights cannot load); the decoding options are known to
``espnet2.bin.asr_inference``; with an LM config (``--use_lm true``), it passes ESPnet's LM
task parser and builds, and the decoding config gives the LM a weight (``lm_weight`` > 0:
otherwise the LM would be trained and packed but never used); the models take stage 2's
``--feats_type``: with ``raw`` (waveforms) a frontend that makes features, with ``fbank``
(the 80-dim features) none, or the ``logmel`` frontend, which passes features through.
Errors name the file and the key.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import yaml


class ConfigError(ValueError):
    pass


def load_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read as YAML: {e}") from e
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: must be a YAML mapping, got {type(cfg).__name__}")
    return cfg


def _build(task, path: Path, extra: List[str]):
    import torch

    parser = task.get_parser()
    try:
        args = parser.parse_args(["--config", str(path), *extra])
    except SystemExit as e:
        raise ConfigError(f"{path}: rejected by {task.__name__}'s argument parser (see above)") from e
    try:
        with torch.device("meta"):
            return task.build_model(args)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise ConfigError(f"{path}: cannot build the model: {type(e).__name__}: {e}") from e


def _check_input(path: Path, model, feats_type: str) -> None:
    """The model's frontend takes what stage 2 wrote (``feats_type``)."""
    from espnet_ext.frontend import LogMelFrontend

    frontend = getattr(model, "frontend", None)
    if feats_type == "raw" and frontend is None:
        raise ConfigError(
            f"{path}: frontend is none, but --feats_type raw gives the model waveforms: "
            "set frontend: logmel (or use --feats_type fbank)"
        )
    if feats_type == "fbank" and frontend is not None and not isinstance(frontend, LogMelFrontend):
        raise ConfigError(
            f"{path}: frontend {type(frontend).__name__} would compute features of the features "
            "--feats_type fbank gives it: set frontend: logmel (passes features through) or none, "
            "or use --feats_type raw"
        )


def check(
    pretrain: Path,
    finetune: Path,
    decode: Path,
    init_from_pretrained: bool,
    lm: Optional[Path] = None,
    feats_type: Optional[str] = None,
) -> None:
    import tempfile

    for p in (pretrain, finetune, decode) + ((lm,) if lm else ()):
        load_yaml(p)

    import espnet_ext

    espnet_ext.register()
    from espnet2.bin.asr_inference import get_parser as inference_parser

    from espnet_ext.tasks.asr import ASRTask
    from espnet_ext.tasks.lm import LMTask
    from espnet_ext.tasks.ssl import SSLTask

    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens.txt"
        tokens.write_text("<blank>\n<unk>\nA\nB\n<sos/eos>\n")
        ssl_model = _build(SSLTask, pretrain, ["--token_list", str(tokens)])
        asr_model = _build(ASRTask, finetune, ["--token_list", str(tokens), "--token_type", "char"])
        if lm is not None:
            _build(LMTask, lm, ["--token_list", str(tokens), "--token_type", "char"])
    if feats_type is not None:
        _check_input(pretrain, ssl_model, feats_type)
        _check_input(finetune, asr_model, feats_type)

    if init_from_pretrained:
        src = {k: tuple(v.shape) for k, v in ssl_model.encoder.state_dict().items()}
        dst = {k: tuple(v.shape) for k, v in asr_model.encoder.state_dict().items()}
        if type(ssl_model.encoder) is not type(asr_model.encoder):
            raise ConfigError(
                f"{finetune}: encoder {type(asr_model.encoder).__name__} differs from the pre-trained "
                f"{type(ssl_model.encoder).__name__} in {pretrain}"
            )
        bad = [
            f"{k}: pre-trained {src.get(k)} vs fine-tune {dst.get(k)}"
            for k in sorted(set(src) | set(dst))
            if src.get(k) != dst.get(k)
        ]
        if bad:
            raise ConfigError(
                f"{finetune}: its encoder does not match the pre-trained encoder of {pretrain}, so the "
                f"pre-trained weights cannot load ({len(bad)} tensors differ): " + "; ".join(bad[:5])
            )

    dec = load_yaml(decode)
    known = {a.dest for a in inference_parser()._actions}
    unknown = sorted(set(dec) - known)
    if unknown:
        raise ConfigError(f"{decode}: unknown decoding options {unknown}")
    if lm is not None and not float(dec.get("lm_weight", 0.0) or 0.0) > 0:
        raise ConfigError(
            f"{decode}: lm_weight is {dec.get('lm_weight', 0.0)}, so the LM of {lm} "
            f"would not be used: set lm_weight > 0, or run with --use_lm false"
        )


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrain_config", type=Path, required=True)
    p.add_argument("--finetune_config", type=Path, required=True)
    p.add_argument("--decode_config", type=Path, required=True)
    p.add_argument("--init_from_pretrained", choices=["true", "false"], default="true")
    p.add_argument("--lm_config", type=Path, default=None, help="LM training config (--use_lm true)")
    p.add_argument(
        "--feats_type", choices=["raw", "fbank"], default=None, help="stage 2's output: the models' input"
    )
    args = p.parse_args(argv)
    try:
        check(
            args.pretrain_config,
            args.finetune_config,
            args.decode_config,
            args.init_from_pretrained == "true",
            args.lm_config,
            args.feats_type,
        )
    except ConfigError as e:
        sys.exit(f"check_config: ERROR: {e}")
    print("check_config: configs OK", file=sys.stderr)


if __name__ == "__main__":
    main()
