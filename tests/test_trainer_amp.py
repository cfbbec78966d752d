"""Mixed precision without a loss scaler for bf16, and the windowed non-finite limit.

The amp decision is a pure function of the GPU's answers (``torch.cuda.is_bf16_supported``
passed as a value), so its CUDA cases run without a GPU. The non-finite window runs the
real trainer on CPU with NaN-injected utterances (as tests/test_checkpoint_resume.py does).
"""

import sys
from pathlib import Path

import pytest
import torch

from espnet_ext.train import amp
from espnet_ext.train.nonfinite import NonFiniteWindow

sys.path.insert(0, str(Path(__file__).resolve().parent))


def test_bf16_builds_no_grad_scaler():
    # CUDA with bf16 (A100): bf16 autocast, no scaler -- auto and explicit bf16 alike.
    for dtype in ("auto", "bf16"):
        plan = amp.amp_plan(True, dtype, "cuda", cuda_bf16_supported=True)
        assert plan.dtype is torch.bfloat16 and not plan.use_scaler
    # CUDA without bf16 (V100): auto does not silently pick fp16; bf16 is refused.
    plan = amp.amp_plan(True, "auto", "cuda", cuda_bf16_supported=False)
    assert plan.dtype is None and not plan.use_scaler and "--amp_dtype fp16" in plan.describe()
    with pytest.raises(ValueError, match="does not support bf16"):
        amp.amp_plan(True, "bf16", "cuda", cuda_bf16_supported=False)
    # An explicit fp16 request keeps the scaler, on either GPU.
    for bf16 in (True, False):
        plan = amp.amp_plan(True, "fp16", "cuda", cuda_bf16_supported=bf16)
        assert plan.dtype is torch.float16 and plan.use_scaler
    # CPU: bf16 without a scaler; fp16 refused.
    plan = amp.amp_plan(True, "auto", "cpu", cuda_bf16_supported=False)
    assert plan.dtype is torch.bfloat16 and not plan.use_scaler
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        amp.amp_plan(True, "fp16", "cpu", cuda_bf16_supported=False)
    # use_amp false: nothing.
    assert amp.amp_plan(False, "auto", "cuda", True) == amp.AmpPlan(None, False, "use_amp false")

    # What ESPnet's train_one_epoch is handed: a disabled scaler (autocast stays on because
    # it is not None; nothing is scaled), ESPnet's own for fp16, None without autocast.
    bf16 = amp.amp_plan(True, "auto", "cuda", cuda_bf16_supported=True)
    espnet_scaler = object()
    scaler = amp.epoch_scaler(bf16, espnet_scaler)
    assert scaler is not None and scaler is not espnet_scaler and not scaler.is_enabled()
    loss = torch.tensor(3.0)
    assert scaler.scale(loss) is loss and scaler.get_scale() == 1.0
    # ...and it skips a non-finite update, which ESPnet's skip path leaves to the scaler.
    param = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([param], lr=1.0)
    param.grad = torch.tensor([float("nan"), 1.0])
    scaler.step(optimizer)
    assert torch.equal(param.detach(), torch.ones(2))
    param.grad = torch.tensor([1.0, 1.0])
    scaler.step(optimizer)
    assert torch.equal(param.detach(), torch.zeros(2))
    fp16 = amp.amp_plan(True, "fp16", "cuda", cuda_bf16_supported=True)
    assert amp.epoch_scaler(fp16, espnet_scaler) is espnet_scaler
    assert amp.epoch_scaler(amp.amp_plan(False, "auto", "cuda", True), espnet_scaler) is None

    # ESPnet's autocast dtype follows the plan for the epoch, and is restored.
    import espnet2.train.trainer as espnet_trainer

    before = dict(espnet_trainer.autocast_args)
    with amp.espnet_autocast_dtype(fp16):
        assert espnet_trainer.autocast_args == {"dtype": torch.float16}
    assert espnet_trainer.autocast_args == before


def test_nonfinite_window_counts_recent_updates_and_loads_old_checkpoints():
    w = NonFiniteWindow(3)
    for skipped in (True, False, False, True):  # updates 1..4
        w.add(skipped)
    assert w.recent == 1 and w.total == 2  # update 1 left the window at update 4
    again = NonFiniteWindow(3)
    again.load(w.state(), w.total)
    assert again.recent == 1 and again.updates == 4
    again.add(True)
    assert again.recent == 2
    lifetime = NonFiniteWindow(None)
    for _ in range(5):
        lifetime.add(True)
    assert lifetime.recent == 5
    old = NonFiniteWindow(2)  # a checkpoint that holds only the lifetime count
    old.load(None, 3)
    assert old.recent == 3 and old.total == 3
    old.add(False)
    assert old.recent == 3
    old.add(False)
    assert old.recent == 0  # aged out after one window


@pytest.mark.slow
def test_nonfinite_limit_counts_a_window_on_cpu(tmp_path):
    """NaN utterances make 2 of the run's 6 updates non-finite: updates 2 and 6. With
    ``--max_nonfinite_steps 1``, the lifetime count (window none) stops the run at update
    6; a window of 5 still holds update 2 then and stops it too; a window of 3 does not,
    and the run finishes."""
    import test_checkpoint_resume as t

    data = t._make_corpus(tmp_path / "corpus", nan_every=12)
    runs = {}
    for window in ("none", "5", "3"):
        proc = t._train(
            "ssl",
            data,
            tmp_path / f"w{window}",
            "--max_nonfinite_steps",
            "1",
            "--nonfinite_window",
            window,
            "--use_amp",
            "true",
        )
        runs[window] = (proc.returncode, proc.stdout + proc.stderr)
    code, log = runs["none"]
    assert code != 0 and "2 optimizer updates in this run were skipped" in log, log[-3000:]
    assert (
        "trainer: trains with autocast bf16, no grad scaler (CPU bf16 autocast: ESPnet autocasts only CUDA)"
        in log
    )
    code, log = runs["5"]
    assert code != 0 and "2 optimizer updates in the last 5 updates were skipped" in log, log[-3000:]
    code, log = runs["3"]
    assert code == 0, log[-3000:]
    assert "epoch 1, micro-batch 4: update skipped" in log
    assert (
        "epoch 2, micro-batch 6: update skipped (NaN/inf loss or gradient); 1 skipped in the last 3 updates"
        in log
    )
