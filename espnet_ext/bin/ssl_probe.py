"""Frozen-encoder probe of a pre-trained encoder: a linear CTC head on its layers, trained
for a fixed budget on one set, CER on another (:mod:`espnet_ext.probe.probe`).

    python -m espnet_ext.bin.ssl_probe \
        --ssl_config exp/ssl_pretrain_*/config.yaml --ssl_model exp/ssl_pretrain_*/valid.loss.best.pth \
        --train_data dump/train_clean --dev_data dump/dev_clean

Without ``--ssl_model`` the encoder is a random initialization of the same config (``--seed``):
the baseline the pre-trained encoder should beat at the same budget. Prints the CER as the
last line, ``probe_cer=X``; ``--out_json`` writes the details.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import torch


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ssl_config", type=Path, required=True)
    p.add_argument("--ssl_model", type=Path, default=None, help="omitted: random initialization")
    p.add_argument(
        "--train_data",
        type=Path,
        required=True,
        help="feats.scp / wav.scp or a directory with one and 'text'",
    )
    p.add_argument("--dev_data", type=Path, required=True)
    p.add_argument("--train_text", type=Path, default=None, help="default: text next to --train_data")
    p.add_argument("--dev_text", type=Path, default=None)
    p.add_argument("--root", type=Path, default=None, help="relative scp entries resolve against it")
    p.add_argument("--layers", default="all", help="1,2,3 | out | all (learned weighted sum)")
    p.add_argument("--steps", type=int, default=300, help="head updates (the budget)")
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--max_train_utts", type=int, default=None)
    p.add_argument("--max_dev_utts", type=int, default=None)
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="head initialization and batch order; with no --ssl_model also the encoder's initialization",
    )
    p.add_argument("--out_json", type=Path, default=None)
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (ssl_probe) %(message)s")
    from espnet_ext.probe.probe import ProbeBudget, load_probe_batches, run_probe
    from espnet_ext.probe.upstream import front, load_ssl_model

    model, _ = load_ssl_model(args.ssl_config, args.ssl_model, seed=args.seed)

    def featurize(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats, _ = front(model, x.unsqueeze(0).float(), torch.tensor([x.size(0)]))
        return feats[0]

    train = load_probe_batches(
        args.train_data, args.train_text, args.max_train_utts, args.batch_size, args.root, featurize
    )
    dev = load_probe_batches(
        args.dev_data, args.dev_text, args.max_dev_utts, args.batch_size, args.root, featurize
    )
    budget = ProbeBudget(steps=args.steps, lr=args.lr, seed=args.seed)
    out = run_probe(model.encoder, train, dev, budget, layers=args.layers, return_details=True)
    summary = dict(
        cer=out["cer"],
        steps=args.steps,
        layers=args.layers,
        layer_weights=out["layer_weights"],
        final_train_loss=out["losses"][-1],
        n_train=sum(len(b[2]) for b in train),
        n_dev=out["n_dev"],
        cpu_seconds=out["cpu_seconds"],
        encoder="random init (seed %d)" % args.seed if args.ssl_model is None else str(args.ssl_model),
    )
    logging.info(json.dumps(summary))
    if args.out_json is not None:
        args.out_json.parent.mkdir(parents=True, exist_ok=True)
        args.out_json.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"probe_cer={out['cer']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
