"""Write the pre-trained encoder's layer-wise outputs for a data set as kaldiio archives.

    python -m espnet_ext.bin.extract_ssl_features \
        --ssl_config exp/ssl_pretrain_*/config.yaml --ssl_model exp/ssl_pretrain_*/valid.loss.best.pth \
        --data dump/dev_clean/feats.scp --layers all --out_dir exp/ssl_features/dev_clean

``--data``: a ``feats.scp`` (the recipe's log-Mel features), a ``wav.scp`` (audio, through
the model's ``logmel`` frontend), or a data/dump directory holding one of them. The model is
built by ESPnet's SSL task (``SSLTask.build_model_from_file``) and run in eval mode, without
masking. ``--layers``: comma-separated block numbers 1..N (block k's output), ``out`` (the
encoder output after its final LayerNorm, what fine-tuning starts from), or ``all``.

Writes ``<out_dir>/layer<k>.ark`` + ``layer<k>.scp`` per layer (``layer_out`` for ``out``),
one (T', d_model) float32 matrix per utterance, T' = (T + 3) // 4 encoder frames.
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

import torch


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ssl_config", type=Path, required=True, help="the SSL experiment's config.yaml")
    p.add_argument(
        "--ssl_model",
        type=Path,
        default=None,
        help="checkpoint (valid.loss.best.pth); omitted: a random initialization (--seed)",
    )
    p.add_argument("--data", type=Path, required=True, help="feats.scp, wav.scp or a directory with one")
    p.add_argument("--layers", default="all", help="e.g. 1,2,3 | out | all (default)")
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument(
        "--root",
        type=Path,
        default=None,
        help="directory relative scp entries resolve against (default: the current dir)",
    )
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    return p


def extract(
    ssl_config: Path,
    ssl_model: Optional[Path],
    data: Path,
    layers: str,
    out_dir: Path,
    root: Optional[Path] = None,
    batch_size: int = 8,
    seed: int = 0,
    device: str = "cpu",
) -> List[str]:
    """Run the extraction; returns the layer names written."""
    import kaldiio

    from espnet_ext.probe.probe import encoder_layers, layer_names
    from espnet_ext.probe.upstream import batched, front, iter_utterances, load_ssl_model

    model, _ = load_ssl_model(ssl_config, ssl_model, seed=seed, device=device)
    names = layer_names(len(model.encoder.encoders), layers)
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = {n: f"layer{n}" if n != "out" else "layer_out" for n in names}
    writers = {
        n: kaldiio.WriteHelper(f"ark,scp:{out_dir / tag[n]}.ark,{out_dir / tag[n]}.scp") for n in names
    }
    n_utt = 0
    try:
        with torch.no_grad():
            for keys, x, lens in batched(iter_utterances(data, root), batch_size):
                feats, flens = front(model, x.to(device), lens.to(device))
                hs, olens, got = encoder_layers(model.encoder, feats, flens, names)
                for n, h in zip(got, hs):
                    for key, mat, t in zip(keys, h, olens.tolist()):
                        writers[n][key] = mat[:t].float().cpu().numpy()
                n_utt += len(keys)
    finally:
        for w in writers.values():
            w.close()
    logging.info(f"{n_utt} utterances, layers {names} -> {out_dir}")
    return [tag[n] for n in names]


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (extract_ssl_features) %(message)s")
    extract(
        args.ssl_config,
        args.ssl_model,
        args.data,
        args.layers,
        args.out_dir,
        args.root,
        args.batch_size,
        args.seed,
        args.device,
    )


if __name__ == "__main__":
    sys.exit(main())
