#!/usr/bin/env python3
"""The 4x conv2d subsampling on the CPU: ssl_conformer's layouts against ATen's default.

Part 1 times each piece of the second (C -> C, 3x3, stride 2) convolution at the
encoder's size in both memory layouts, NCHW (ATen's default) and channels-last:
the forward, the input gradient and the weight gradient, plus the layout
conversions of the input. These are the figures behind the choices in
``espnet_ext/nets/subsampling.py``: forward and input gradient channels-last,
weight gradient NCHW, and the first conv written straight into channels-last.

Part 2 runs forward + backward of the whole subsampling block (two convs, the
length masks and ReLUs, the output Linear) as ``_Conv2dSubsampling4`` does it and
as plain ``nn.Conv2d`` modules do it (ATen's NCHW path, the same parameters),
and checks that outputs and gradients agree.

Process CPU time, one thread, best of ``--iters``. Last line:
``subsampling_conv frames=T channels=C ours_s=X aten_s=Y speedup=Y/X``.

Run:  .venv/bin/python bench/subsampling_conv.py            (about 1 minute)
      .venv/bin/python bench/subsampling_conv.py --quick
"""

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from espnet_ext.nets.lengths import ceil_div  # noqa: E402
from espnet_ext.nets.subsampling import _Conv2dSubsampling4, _masked_relu_  # noqa: E402


def _best(fn, iters: int) -> float:
    fn()
    times = []
    for _ in range(iters):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def _aten_forward(m: _Conv2dSubsampling4, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The same block with both convs as nn.Conv2d (ATen's NCHW kernels) and the module's masked ReLU."""
    x = F.pad(x.unsqueeze(1), (1, 1, 0, 2))
    lengths = ceil_div(lengths, 2)
    x = _masked_relu_(m.conv1(x), lengths)
    lengths = ceil_div(lengths, 2)
    x = _masked_relu_(m.conv2(x), lengths)
    b, c, t, f = x.shape
    return m.out(x.transpose(1, 2).reshape(b, t, c * f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.frames, args.channels, args.iters = 2, 400, 64, 1
    torch.set_num_threads(1)
    torch.manual_seed(0)
    b, t, c = args.batch, args.frames, args.channels
    cl = torch.channels_last
    conv_args = ([c], [2, 2], [1, 1], [1, 1], False, [0, 0], 1)
    backward = torch.ops.aten.convolution_backward

    rows, cols = (t + 1) // 2, 40
    x = torch.randn(b, c, rows, cols)
    w = torch.randn(c, c, 3, 3) * 0.02
    g = torch.randn(b, c, (rows + 1) // 2, cols // 2)
    print(f"second conv: input ({b}, {c}, {rows}, {cols}), 3x3 stride 2, one thread, CPU seconds")
    print(f"{'piece':<22} {'NCHW':>8} {'chan-last':>10}")

    def grad(mask, layout):
        operands = (t.contiguous(memory_format=layout) for t in (g, x, w))
        return backward(*operands, *conv_args, mask)

    for name, nchw, chl in (
        (
            "forward",
            lambda: F.conv2d(x, w, None, stride=2, padding=1),
            lambda: F.conv2d(x.contiguous(memory_format=cl), w.contiguous(memory_format=cl), None, 2, 1),
        ),
        (
            "input gradient",
            lambda: grad([True, False, False], torch.contiguous_format),
            lambda: grad([True, False, False], cl),
        ),
        (
            "weight gradient",
            lambda: grad([False, True, False], torch.contiguous_format),
            lambda: grad([False, True, False], cl),
        ),
    ):
        print(f"{name:<22} {_best(nchw, args.iters):>8.3f} {_best(chl, args.iters):>10.3f}")
    x_cl = x.contiguous(memory_format=cl)
    print(f"{'copy NCHW -> chan-last':<22} {_best(lambda: x.contiguous(memory_format=cl), args.iters):>8.3f}")
    print(f"{'copy chan-last -> NCHW':<22} {_best(lambda: x_cl.contiguous(), args.iters):>8.3f}")

    m = _Conv2dSubsampling4(80, 256, c).train()
    feats = torch.randn(b, t, 80)
    lengths = torch.tensor([t - (i * t * 15) // (100 * max(1, b - 1)) for i in range(b)])
    results = {}
    for name, fwd in (
        ("ours", lambda: m(feats, lengths)[0]),
        ("aten", lambda: _aten_forward(m, feats, lengths)),
    ):

        def step(fwd=fwd, name=name):
            m.zero_grad(set_to_none=True)
            out = fwd()
            out.pow(2).mean().backward()
            results[name] = (out.detach(), [p.grad.clone() for p in m.parameters()])

        results[name + "_s"] = _best(step, args.iters)
    torch.testing.assert_close(results["ours"][0], results["aten"][0], rtol=1e-4, atol=1e-4)
    for ours, aten in zip(results["ours"][1], results["aten"][1]):
        torch.testing.assert_close(ours, aten, rtol=1e-3, atol=1e-5)
    ours_s, aten_s = results["ours_s"], results["aten_s"]
    print(
        f"whole block, forward + backward, ({b}, {t}, 80) -> (B, {(t + 3) // 4}, 256): outputs and gradients agree"
    )
    print(
        f"subsampling_conv frames={t} channels={c} ours_s={ours_s:.3f} aten_s={aten_s:.3f} speedup={aten_s / ours_s:.2f}"
    )


if __name__ == "__main__":
    main()
