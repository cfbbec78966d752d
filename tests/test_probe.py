"""The frozen-encoder probe trains its head only: the encoder's parameters and buffers are
bit-identical afterwards (and its train mode and requires_grad flags are restored), the head
moves, and the CER is a percentage."""

from pathlib import Path

import pytest
import torch

import espnet_ext

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN = ROOT / "conf" / "pretrain_conformer_bestrq_embedded.yaml"


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    espnet_ext.register()
    from espnet_ext.tasks.ssl import SSLTask

    tokens = tmp_path_factory.mktemp("tok") / "tokens.txt"
    tokens.write_text("<blank>\n<unk>\n<sos/eos>\n")
    args = SSLTask.get_parser().parse_args(["--config", str(PRETRAIN), "--token_list", str(tokens)])
    torch.manual_seed(0)
    return SSLTask.build_model(args).encoder


def _batches(n_batches, seed):
    g = torch.Generator().manual_seed(seed)
    words = ["THE CAT", "A DOG RAN", "IT IS", "SO WE GO"]
    out = []
    for b in range(n_batches):
        lens = torch.tensor([120, 96, 80])
        feats = torch.randn(3, 120, 80, generator=g)
        out.append((feats, lens, [words[(b + i) % 4] for i in range(3)]))
    return out


def test_probe_trains_on_frozen_weights(encoder):
    from espnet_ext.probe import ProbeBudget, run_probe

    encoder.train()
    next(encoder.parameters()).requires_grad_(False)  # flags are restored as they were
    before = {k: v.clone() for k, v in encoder.state_dict(keep_vars=False).items()}
    flags = [p.requires_grad for p in encoder.parameters()]
    rng = torch.get_rng_state()
    out = run_probe(
        encoder,
        _batches(2, 0),
        _batches(1, 1),
        ProbeBudget(steps=20, lr=1e-2),
        layers="all",
        return_details=True,
    )
    after = encoder.state_dict()
    assert set(before) == set(after) and len(before) > 20
    for k in before:  # parameters and buffers alike
        assert torch.equal(before[k], after[k]), k
    assert encoder.training and [p.requires_grad for p in encoder.parameters()] == flags
    assert all(p.grad is None for p in encoder.parameters())
    head = out["head"]
    assert head.linear.bias.abs().sum() > 0  # initialized to zero, moved by training
    assert out["losses"][-1] < out["losses"][0]
    assert len(out["layer_weights"]) == len(encoder.encoders) + 1
    assert 0.0 <= out["cer"] and out["cer"] == out["cer"]  # a number (can exceed 100)
    assert torch.equal(torch.get_rng_state(), rng)  # seeded by its own generator


def test_probe_is_deterministic_and_layer_choice(encoder):
    from espnet_ext.probe import run_probe
    from espnet_ext.probe.probe import layer_names

    a = run_probe(encoder, _batches(2, 0), _batches(1, 1), 10, layers="out")
    b = run_probe(encoder, _batches(2, 0), _batches(1, 1), 10, layers="out")
    assert a == b
    assert layer_names(3, "all") == ["1", "2", "3", "out"]
    assert layer_names(3, "2,out") == ["2", "out"]
    with pytest.raises(ValueError):
        layer_names(3, "4")


class _FakeSSL(torch.nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("global_step", torch.tensor([0]))


def test_probe_hook_schedule_and_options(encoder, monkeypatch, tmp_path):
    import espnet_ext.probe.probe as probe_mod
    from espnet_ext.probe.hook import ProbeHook
    from espnet_ext.tasks.ssl import SSLTask

    calls = []
    monkeypatch.setattr(
        probe_mod,
        "run_probe",
        lambda enc, tr, dv, budget, layers, return_details: (
            calls.append(enc) or dict(cer=50.0, n_dev=1, cpu_seconds=0.0)
        ),
    )
    model = _FakeSSL(encoder)
    hook = ProbeHook(model, every=2, accum_grad=3, train_batches=[], dev_batches=[], steps=5, layers="out")
    for i in range(1, 19):  # 18 micro-batches = 6 updates: probes after updates 2, 4, 6
        model.global_step += 1
        hook.after_batch(i)
    assert hook.results == [(2, 50.0), (4, 50.0), (6, 50.0)] and calls[0] is encoder
    other = ProbeHook(
        model, every=2, accum_grad=3, train_batches=[], dev_batches=[], steps=5, layers="out", rank=1
    )
    other.after_batch(18)
    assert other.results == []

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("<blank>\n<unk>\n<sos/eos>\n")
    base = ["--config", str(PRETRAIN), "--token_list", str(tokens)]
    args = SSLTask.get_parser().parse_args(base)
    assert args.probe_every_steps == 0  # off in the shipped config
    SSLTask.trainer.build_options(args)
    assert not any(
        isinstance(h, ProbeHook)
        for h in SSLTask.trainer.build_hooks(model, SSLTask.trainer.build_options(args), False)
    )
    args = SSLTask.get_parser().parse_args(base + ["--probe_every_steps", "100"])
    with pytest.raises(ValueError, match="probe_train_data"):
        SSLTask.trainer.build_hooks(model, SSLTask.trainer.build_options(args), False)
    SSLTask.trainer._probe_args = None


def test_extract_ssl_features_writes_each_layer(encoder, tmp_path):
    import kaldiio
    import numpy as np
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    from espnet_ext.bin.extract_ssl_features import extract
    from espnet_ext.probe.upstream import load_ssl_model
    from espnet_ext.tasks.ssl import SSLTask

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("<blank>\n<unk>\n<sos/eos>\n")
    args = SSLTask.get_parser().parse_args(["--config", str(PRETRAIN), "--token_list", str(tokens)])
    torch.manual_seed(3)
    model = SSLTask.build_model(args)
    config = tmp_path / "config.yaml"
    with config.open("w") as f:
        yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
    ckpt = tmp_path / "valid.loss.best.pth"
    torch.save(model.state_dict(), ckpt)
    g = np.random.default_rng(0)
    feats = {
        "u1": g.standard_normal((50, 80)).astype(np.float32),
        "u2": g.standard_normal((33, 80)).astype(np.float32),
    }
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/feats.ark,{tmp_path}/feats.scp") as w:
        for k, v in feats.items():
            w[k] = v
    names = extract(config, ckpt, tmp_path / "feats.scp", "all", tmp_path / "out", batch_size=2)
    assert names == ["layer1", "layer2", "layer3", "layer_out"]
    loaded, _ = load_ssl_model(config, ckpt)
    for k, v in feats.items():
        with torch.no_grad():
            (out, hidden), _, _ = loaded.encoder(
                torch.from_numpy(v)[None], torch.tensor([len(v)]), return_all_hs=True
            )
        for n, ref in zip(names, [*hidden, out]):
            got = kaldiio.load_scp(str(tmp_path / "out" / f"{n}.scp"))[k]
            assert got.shape == ((len(v) + 3) // 4, 144)
            assert np.allclose(got, ref[0].numpy(), atol=1e-4), n
