#!/usr/bin/env python3
"""Cost of BEST-RQ target computation within a pre-training step (one CPU thread).

Work: a batch of B utterances of S seconds of 80-dim log-Mel-shaped input
(100 frames/s), codebook 8192 x 16, 4-frame stacking. Measured, each as the
fastest of a few repeats in process CPU time (one compute thread: equals wall
time on an idle machine, and excludes waiting for a core on a shared one):

* targets: ``BestRQLoss.compute_targets`` (normalize + stack, one projection
  matmul, nearest code by argmax of cosine) on the whole batch;
* step: one pre-training step: ``BestRQMasking`` + encoder forward + BEST-RQ
  loss (which includes the targets) + backward;
* share = targets / step (target: < 3 %).

Stock comparisons on the same work, printed as ratios:

* masking: ``BestRQMasking`` vs ESPnet's ``espnet2.ssl.utils.mask.Masking``
  (the HuBERT util) at 40-frame spans and a similar masked fraction;
* loss: ``BestRQLoss`` (targets computed on the fly + head + cross-entropy,
  forward + backward) vs ESPnet's ``HuBERTLoss`` (targets given, as k-means
  labels would be; 8192 classes, final_dim 256) on the same encoder output
  and masked frames.

Encoder: ``espnet_ext.nets.ssl_conformer.SSLConformerEncoder`` if importable,
else ESPnet's ``ConformerEncoder`` (printed). Default size 12 blocks x 512
(8 heads, FFN 2048, kernel 31), ESPnet's LibriSpeech Conformer scale; a
larger encoder only lowers the share.

Run:  .venv/bin/python bench/bestrq_targets.py            (a few minutes)
      .venv/bin/python bench/bestrq_targets.py --quick    (smoke run)
"""

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Tuple

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from espnet_ext.ssl.best_rq import BestRQLoss  # noqa: E402
from espnet_ext.ssl.masking import BestRQMasking  # noqa: E402


def _timed(fn: Callable[[], None], repeats: int) -> Tuple[float, float]:
    """Fastest (cpu seconds, wall seconds) of `repeats` calls after a warm-up."""
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return min(cpu), min(wall)


def _build_encoder(args) -> Tuple[torch.nn.Module, str]:
    conf = dict(
        input_size=80,
        output_size=args.d_model,
        attention_heads=args.heads,
        linear_units=args.linear_units,
        num_blocks=args.blocks,
        cnn_module_kernel=args.kernel,
        input_layer="conv2d",
        macaron_style=True,
        use_cnn_module=True,
    )
    try:
        from espnet_ext.nets.ssl_conformer import SSLConformerEncoder

        return SSLConformerEncoder(**conf), "espnet_ext SSLConformerEncoder"
    except ImportError:
        from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

        return ConformerEncoder(**conf), "ESPnet ConformerEncoder (ssl_conformer missing)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--linear-units", type=int, default=2048)
    parser.add_argument("--kernel", type=int, default=31)
    parser.add_argument("--repeats", type=int, default=2, help="timed steps")
    parser.add_argument("--quick", action="store_true", help="2 x 5 s, 2 x 256")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.seconds, args.blocks, args.d_model = 2, 5.0, 2, 256
        args.heads, args.linear_units, args.repeats = 4, 1024, 1

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)

    frames = int(round(args.seconds * 100))
    feats = torch.randn(args.batch, frames, 80) * 3.0 + 2.0
    # Sorted-batch lengths: the longest is `seconds`, the rest up to 10 % shorter.
    lengths = frames - (torch.arange(args.batch) * frames // (10 * args.batch))
    pad = torch.arange(frames)[None, :] >= lengths[:, None]

    encoder, encoder_name = _build_encoder(args)
    encoder.train()
    masking = BestRQMasking()
    loss_fn = BestRQLoss(encoder_output_size=args.d_model)  # 8192 x 16, stack 4
    n_params = sum(p.numel() for p in encoder.parameters()) / 1e6

    def step() -> None:
        masked, info = masking(feats, pad)
        (out, hs), olens, _ = encoder(masked, lengths, masks=pad, return_all_hs=True)
        loss, _ = loss_fn(hs[:-1] + [out], olens, feats, lengths, info)
        loss.backward()
        encoder.zero_grad(set_to_none=True)
        loss_fn.zero_grad(set_to_none=True)

    target_rep = max(3, 3 * args.repeats)
    t_targets = _timed(lambda: loss_fn.compute_targets(feats, lengths), target_rep)
    t_step = _timed(step, args.repeats)

    # --- stock comparisons on the same batch
    from espnet2.ssl.loss.hubert import HuBERTLoss
    from espnet2.ssl.utils.mask import Masking

    _, info = masking(feats, pad)
    t_mask = _timed(lambda: masking(feats, pad), target_rep)
    frac = float(info["input_mask"][~pad].float().mean())
    stock_mask = Masking(encoder_embed_dim=80, mask_prob=frac, mask_length=40)
    t_stock_mask = _timed(lambda: stock_mask(feats.clone(), pad), target_rep)

    with torch.no_grad():
        (out, hs), olens, _ = encoder(feats, lengths, masks=pad, return_all_hs=True)
    hidden = out.detach().requires_grad_(True)
    t_enc = hidden.shape[1]
    valid = torch.arange(t_enc)[None, :] < olens[:, None]
    mask_m = info["encoder_mask"][:, :t_enc] & valid
    labels = loss_fn.compute_targets(feats, lengths)[0, :, :t_enc]
    stock_loss = HuBERTLoss(encoder_output_size=args.d_model, num_classes=8192, final_dim=256)

    def ours() -> None:
        loss, _ = loss_fn([hidden], olens, feats, lengths, {"encoder_mask": mask_m})
        loss.backward()

    def stock() -> None:
        loss, _ = stock_loss([hidden], olens, labels, olens, {"mask_m": mask_m, "mask_u": valid & ~mask_m})
        loss.backward()

    t_ours_loss = _timed(ours, target_rep)
    t_stock_loss = _timed(stock, target_rep)

    print(
        f"encoder: {encoder_name}, {args.blocks} x {args.d_model} "
        f"(heads {args.heads}, FFN {args.linear_units}, kernel {args.kernel}), "
        f"{n_params:.1f}M params"
    )
    print(
        f"batch: {args.batch} x {args.seconds:g} s ({frames} frames max, "
        f"{int(valid.sum())} encoder frames), codebook 8192 x 16, 1 thread"
    )
    print(f"BEST-RQ targets          : {t_targets[0] * 1e3:9.1f} ms cpu ({t_targets[1] * 1e3:.1f} ms wall)")
    print(
        f"pre-training step        : {t_step[0] * 1e3:9.1f} ms cpu "
        f"({t_step[1] * 1e3:.1f} ms wall)  masking + encoder fwd/bwd + loss"
    )
    print(f"share of step in targets : {100 * t_targets[0] / t_step[0]:9.2f} %  (target < 3 %)")
    print(
        f"masking  ours / ESPnet Masking  : {t_mask[0] * 1e3:7.2f} / "
        f"{t_stock_mask[0] * 1e3:7.2f} ms = {t_mask[0] / t_stock_mask[0]:.2f}x  "
        f"(masked fraction {frac:.3f})"
    )
    print(
        f"loss fwd+bwd ours (targets on the fly) / ESPnet HuBERTLoss (targets "
        f"given): {t_ours_loss[0] * 1e3:7.1f} / {t_stock_loss[0] * 1e3:7.1f} ms = "
        f"{t_ours_loss[0] / t_stock_loss[0]:.2f}x"
    )


if __name__ == "__main__":
    main()
