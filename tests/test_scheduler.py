"""WarmupCosineLR (espnet_ext.schedulers.warmup_cosine_lr)."""

import math

import pytest
import torch
from typeguard import TypeCheckError

from espnet_ext.schedulers.warmup_cosine_lr import WarmupCosineLR

PEAK, FLOOR = 2e-3, 1e-5


def _optimizer(lr=PEAK):
    params = [torch.nn.Parameter(torch.zeros(3))]
    return torch.optim.AdamW(params, lr=lr)


def _lrs(sched, optim, steps):
    """lr used by each of `steps` optimizer updates."""
    values = []
    for _ in range(steps):
        values.append(optim.param_groups[0]["lr"])
        optim.step()
        sched.step()
    return values


def test_schedule_values():
    optim = _optimizer()
    sched = WarmupCosineLR(optim, warmup_steps=10, total_steps=110, min_lr=FLOOR)
    lrs = _lrs(sched, optim, 130)
    assert lrs[0] == 0.0
    assert lrs[5] == pytest.approx(PEAK / 2)
    assert lrs[10] == pytest.approx(PEAK)
    assert lrs[60] == pytest.approx((PEAK + FLOOR) / 2)
    assert lrs[35] == pytest.approx(FLOOR + (PEAK - FLOOR) * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert lrs[110] == pytest.approx(FLOOR)
    assert lrs[129] == pytest.approx(FLOOR)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:11]))
    assert all(a >= b for a, b in zip(lrs[10:110], lrs[11:111]))
    assert sched.get_last_lr() == [optim.param_groups[0]["lr"]]


def test_each_param_group_peaks_at_its_own_lr():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optim = torch.optim.AdamW([{"params": [a]}, {"params": [b], "lr": 1e-4}], lr=1e-3)
    sched = WarmupCosineLR(optim, warmup_steps=4, total_steps=8, min_lr=0.0)
    for _ in range(4):
        optim.step()
        sched.step()
    assert [g["lr"] for g in optim.param_groups] == pytest.approx([1e-3, 1e-4])


def test_zero_warmup_starts_at_peak():
    optim = _optimizer()
    WarmupCosineLR(optim, warmup_steps=0, total_steps=10, min_lr=FLOOR)
    assert optim.param_groups[0]["lr"] == pytest.approx(PEAK)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(warmup_steps=100, total_steps=100), "total_steps"),
        (dict(warmup_steps=100, total_steps=50), "total_steps"),
        (dict(warmup_steps=-1, total_steps=50), "warmup_steps"),
        (dict(warmup_steps=1, total_steps=50, min_lr=1e-2), "min_lr"),
        (dict(warmup_steps=1, total_steps=50, min_lr=-1e-6), "min_lr"),
    ],
)
def test_invalid_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WarmupCosineLR(_optimizer(), **kwargs)


def test_typechecked_constructor():
    with pytest.raises(TypeCheckError):
        WarmupCosineLR(_optimizer(), warmup_steps="10", total_steps=100)


def test_state_dict_round_trip_resumes_schedule():
    optim = _optimizer()
    sched = WarmupCosineLR(optim, warmup_steps=10, total_steps=50, min_lr=FLOOR)
    _lrs(sched, optim, 23)
    state, optim_state = sched.state_dict(), optim.state_dict()
    expected = _lrs(sched, optim, 10)

    # ESPnet's order (Trainer.resume): build, load optimizer, load scheduler.
    optim2 = _optimizer()
    sched2 = WarmupCosineLR(optim2, warmup_steps=10, total_steps=50, min_lr=FLOOR)
    optim2.load_state_dict(optim_state)
    sched2.load_state_dict(state)
    assert _lrs(sched2, optim2, 10) == pytest.approx(expected)

    # Scheduler state alone also restores the lr of the next update.
    optim3 = _optimizer()
    sched3 = WarmupCosineLR(optim3, warmup_steps=10, total_steps=50, min_lr=FLOOR)
    sched3.load_state_dict(state)
    assert optim3.param_groups[0]["lr"] == pytest.approx(expected[0])
    assert _lrs(sched3, optim3, 10) == pytest.approx(expected)


def test_registered_in_espnet_scheduler_classes():
    from espnet2.schedulers.abs_scheduler import AbsBatchStepScheduler
    from espnet2.tasks.abs_task import scheduler_classes
    from espnet2.tasks.ssl import SSLTask
    from espnet2.utils.get_default_kwargs import get_default_kwargs

    scheduler_classes["warmupcosinelr"] = WarmupCosineLR
    parser = SSLTask.get_parser()
    args = parser.parse_args(
        [
            "--scheduler",
            "warmupcosinelr",
            "--scheduler_conf",
            "warmup_steps=3",
            "--scheduler_conf",
            "total_steps=13",
            "--scheduler_conf",
            "min_lr=0.0001",
        ]
    )
    # As AbsTask.main_worker builds it, and as the trainer dispatches it.
    optim = _optimizer()
    sched = scheduler_classes[args.scheduler](optim, **args.scheduler_conf)
    assert isinstance(sched, AbsBatchStepScheduler)
    lrs = _lrs(sched, optim, 15)
    assert lrs[3] == pytest.approx(PEAK) and lrs[14] == pytest.approx(1e-4)
    # Written to config.yaml by AbsTask with every default filled in.
    defaults = get_default_kwargs(WarmupCosineLR)
    assert defaults == {
        "warmup_steps": 10000,
        "total_steps": 100000,
        "min_lr": 1e-6,
        "last_epoch": -1,
    }
