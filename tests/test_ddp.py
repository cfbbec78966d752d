"""Real data-parallel training on CPU (gloo), started through the recipe's launcher.

ESPnet's own trainer runs (``python -m espnet_ext.bin.asr_train`` / ``ssl_train``) on a tiny
synthetic kaldi-ark set, launched by ``python -m espnet_ext.bin.launch`` exactly as stages 4
and 5 do: one optimizer step on 2 ranks (each holding half of every micro-batch) equals one
step of a single process on the whole batch, on the local backend (torchrun --standalone)
and on the torchrun host-list backend (two "nodes" on this machine, static rendezvous);
accumulation with ``accum_no_sync`` equals the stock trainer's on 2 ranks; 4 ranks
pre-train. Parameters are compared after SGD steps (Adam would turn rounding noise in
near-zero gradients into full-size updates). All tests here start several processes.
"""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
pytestmark = pytest.mark.slow

# A small ASR model of the recipe's kind, deterministic: no dropout, no SpecAugment.
_ASR_CONF = {
    "frontend": None,
    "input_size": 80,
    "normalize": None,
    "specaug": None,
    "encoder": "ssl_conformer",
    "encoder_conf": {
        "output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 2,
        "cnn_module_kernel": 7, "dropout_rate": 0.0, "positional_dropout_rate": 0.0,
        "attention_dropout_rate": 0.0, "subsampling_channels": 8,
    },
    "decoder": "transformer",
    "decoder_conf": {
        "attention_heads": 2, "linear_units": 64, "num_blocks": 1, "dropout_rate": 0.0,
        "positional_dropout_rate": 0.0, "self_attention_dropout_rate": 0.0,
        "src_attention_dropout_rate": 0.0,
    },
    "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False},
    "batch_type": "sorted",
    "batch_size": 4,
    "accum_grad": 1,
    "num_workers": 0,
    "max_epoch": 1,
    "num_iters_per_epoch": 1,
    "optim": "sgd",
    "optim_conf": {"lr": 0.5},
    "grad_clip": 1000.0,
    "num_att_plot": 0,
    "seed": 3,
}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = dict(os.environ)
    env["PATH"] = f"{Path(PY).parent}:{env.get('PATH', '')}"  # torchrun on the remote side
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """16 utterances of 60-119 frames (uneven, so padding differs between 1 and 2 ranks)."""
    import kaldiio

    root = tmp_path_factory.mktemp("ddp_data")
    rng = np.random.default_rng(0)
    letters = list("abcdefgh")
    with (
        kaldiio.WriteHelper(f"ark,scp:{root}/feats.ark,{root}/feats.scp") as ark,
        open(root / "feats_shape", "w") as shape,
        open(root / "text", "w") as text,
    ):
        for i in range(16):
            frames = int(rng.integers(60, 120))
            ark(f"utt{i:03d}", rng.standard_normal((frames, 80)).astype(np.float32))
            shape.write(f"utt{i:03d} {frames},80\n")
            words = ["".join(rng.choice(letters, size=int(rng.integers(2, 5))))
                     for _ in range(int(rng.integers(1, 4)))]  # fmt: skip
            text.write(f"utt{i:03d} {' '.join(words)}\n")
    (root / "tokens.txt").write_text("\n".join(["<blank>", "<unk>", "<space>", *letters, "<sos/eos>"]) + "\n")
    return root


def _asr_command(data: Path, config: Path, out: Path, *extra: str):
    d = str(data)
    return [PY, "-m", "espnet_ext.bin.asr_train", "--config", str(config), "--token_type", "char",
            "--token_list", f"{d}/tokens.txt",
            "--train_data_path_and_name_and_type", f"{d}/feats.scp,speech,kaldi_ark",
            "--train_data_path_and_name_and_type", f"{d}/text,text,text",
            "--train_shape_file", f"{d}/feats_shape",
            "--valid_data_path_and_name_and_type", f"{d}/feats.scp,speech,kaldi_ark",
            "--valid_data_path_and_name_and_type", f"{d}/text,text,text",
            "--valid_shape_file", f"{d}/feats_shape", "--output_dir", str(out), *extra]  # fmt: skip


def _launch(workdir: Path, geometry, command, log: Path):
    r = subprocess.run(
        [PY, "-m", "espnet_ext.bin.launch", *map(str, geometry), "--log", str(log), "--", *command],
        cwd=workdir, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n{log.read_text() if log.exists() else ''}"
    return r


def _params(out: Path):
    return torch.load(out / "1epoch.pth", map_location="cpu")


def _max_diff(a, b):
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def one_step(tmp_path_factory, data):
    """The config and a single process's parameters after one step on the 4-utterance batch,
    and the initial parameters (ESPnet seeds, then builds the model)."""
    work = tmp_path_factory.mktemp("one_step")
    config = work / "asr.yaml"
    config.write_text(yaml.safe_dump(_ASR_CONF))
    out = work / "single"
    r = _launch(work, ["--ngpu", 0], _asr_command(data, config, out), work / "single.log")
    assert "1 node x 1 CPU process = 1 rank, single process" in r.stdout

    from espnet2.torch_utils.set_all_random_seed import set_all_random_seed

    import espnet_ext  # noqa: F401
    from espnet_ext.tasks.asr import ASRTask

    args = ASRTask.get_parser().parse_args(_asr_command(data, config, out)[3:])
    set_all_random_seed(args.seed)
    init = ASRTask.build_model(args).state_dict()
    return config, _params(out), init


@pytest.mark.parametrize("backend", ["local", "torchrun"])
def test_one_step_on_two_ranks_equals_one_process_on_the_whole_batch(tmp_path, data, one_step, backend):
    config, single, init = one_step
    out = tmp_path / "ddp"
    if backend == "local":
        geometry = ["--ngpu", 0, "--cpu_procs", 2]
        expect = "1 node x 2 CPU processes = 2 ranks, DDP over gloo"
    else:  # two "nodes" on this machine; the remote shell runs the node's command locally
        geometry = ["--backend", "torchrun", "--ngpu", 0, "--num_nodes", 2, "--hosts", "127.0.0.1,127.0.0.1",
                    "--master_port", _free_port(), "--remote_shell", "sh -c 'exec bash -c \"$1\"'"]  # fmt: skip
        expect = "2 nodes x 1 CPU process = 2 ranks, DDP over gloo"
    log = tmp_path / "train.log"
    r = _launch(tmp_path, geometry, _asr_command(data, config, out), log)
    assert expect in r.stdout
    assert "[" in log.read_text() and ":0/2]" in log.read_text()  # ESPnet ran as rank 0 of 2
    if backend == "torchrun":
        assert (tmp_path / "train.node1.log").exists()
    ddp = _params(out)
    update = _max_diff(single, init)
    diff = _max_diff(ddp, single)
    assert update > 1e-2, "the step must move the parameters"
    assert diff < 1e-5 and diff < 1e-4 * update, (diff, update)
    for k in single:
        torch.testing.assert_close(ddp[k], single[k], rtol=1e-4, atol=1e-5)


def test_no_sync_accumulation_equals_stock_on_two_ranks(tmp_path, data, one_step):
    base, _, init = one_step
    conf = dict(yaml.safe_load(base.read_text()), accum_grad=4, num_iters_per_epoch=8, optim_conf={"lr": 0.2})
    config = tmp_path / "accum.yaml"
    config.write_text(yaml.safe_dump(conf))
    results = {}
    for no_sync in ("false", "true"):
        out = tmp_path / f"no_sync_{no_sync}"
        log = tmp_path / f"{no_sync}.log"
        _launch(tmp_path, ["--ngpu", 0, "--cpu_procs", 2],
                _asr_command(data, config, out, "--accum_no_sync", no_sync, "--log_level", "DEBUG"), log)  # fmt: skip
        hooks = re.search(r"iteration hooks: \[[^\]]*'NoSyncHook'", log.read_text()) is not None
        assert hooks == (no_sync == "true"), "the no_sync hook runs exactly when asked for"
        results[no_sync] = _params(out)
    update = _max_diff(results["false"], init)
    diff = _max_diff(results["true"], results["false"])
    assert update > 1e-2 and diff < 1e-5, (diff, update)


def test_bench_counts_one_gradient_all_reduce_per_step_with_no_sync(tmp_path):
    """bench/ddp_accum.py drives ESPnet's stock and our train_one_epoch on the same DDP model
    and batches (2 gloo ranks, accum_grad 4) and counts DDP's bucket all-reduces."""
    out = tmp_path / "bench.json"
    r = subprocess.run([PY, str(ROOT / "bench" / "ddp_accum.py"), "--quick", "--no_estimate", "--json", str(out)],
                       cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    import json

    res = json.loads(out.read_text())
    stock, ours, grads = res["stats"]["stock"], res["stats"]["ours"], res["grad_nbytes"]
    assert res["accum_grad"] == 4 and res["world"] == 2
    assert stock["grad_bytes"] == 4 * grads  # every micro-batch reduces every gradient
    assert ours["grad_bytes"] == grads  # once per optimizer step
    assert ours["grad_calls"] < stock["grad_calls"]
    # Stock: per micro-batch a stop flag, one all-gather per statistic and the weight.
    # Ours: the weight per micro-batch, one statistics all-reduce per update, and one
    # epoch-length check per epoch (1 step here); no all-gathers.
    assert stock["kinds"]["all_gather"][0] >= 4 * 2 and "all_gather" not in ours["kinds"]
    assert ours["kinds"]["all_reduce"][0] == 4 + 1 + 1
    assert ours["other_calls"] < stock["other_calls"]
    assert max(res["stat_diff"].values()) < 1e-4 * max(1.0, *map(abs, res["epoch_stats"]["stock"].values()))
    assert res["max_param_update"] > 1e-2 and res["max_param_diff"] < 1e-5


def test_four_ranks_pretrain_through_the_launcher(tmp_path, data):
    conf = yaml.safe_load((ROOT / "conf" / "pretrain_conformer_bestrq_embedded.yaml").read_text())
    conf.update(
        encoder_conf=dict(conf["encoder_conf"], output_size=32, attention_heads=2, linear_units=64,
                          num_blocks=2, subsampling_channels=8),
        loss=[{"name": "best_rq", "conf": dict(conf["loss"][0]["conf"], codebook_size=64)}],
        batch_type="sorted", batch_size=8, accum_grad=2, global_batch_utts=16, accum_no_sync=True,
        max_epoch=1, num_iters_per_epoch=4, num_workers=0, keep_nbest_models=1,
        scheduler_conf=dict(conf["scheduler_conf"], warmup_steps=1, total_steps=2),
        # This fixture is a plain kaldiio archive without stage 2's shards: ESPnet's own
        # iterator here (the sharded one is tested in tests/test_shards.py).
        iterator_type="sequence", valid_iterator_type="sequence",
    )  # fmt: skip
    config = tmp_path / "ssl.yaml"
    config.write_text(yaml.safe_dump(conf))
    (tmp_path / "ssl_tokens.txt").write_text("<blank>\n<unk>\n<sos/eos>\n")
    d = str(data)
    command = [PY, "-m", "espnet_ext.bin.ssl_train", "--config", str(config),
               "--token_list", str(tmp_path / "ssl_tokens.txt"),
               "--train_data_path_and_name_and_type", f"{d}/feats.scp,speech,kaldi_ark",
               "--train_shape_file", f"{d}/feats_shape",
               "--valid_data_path_and_name_and_type", f"{d}/feats.scp,speech,kaldi_ark",
               "--valid_shape_file", f"{d}/feats_shape", "--output_dir", str(tmp_path / "exp")]  # fmt: skip
    log = tmp_path / "train.log"
    r = _launch(tmp_path, ["--ngpu", 0, "--cpu_procs", 4], command, log)
    assert "16 utterances = 4 ranks x 2 per micro-batch x 2 accumulation steps" in r.stdout
    assert "global_batch_utts 16: matches" in r.stdout
    text = log.read_text()
    assert ":0/4]" in text and "1epoch results" in text and "# Accounting: status=0" in text
    assert (tmp_path / "exp" / "1epoch.pth").exists()
    assert text.startswith("# launch ")  # the launcher's header: geometry, arithmetic, command


_MASK_PROBE = r'''
"""Records every training-mode BEST-RQ mask of this rank; optionally SIGKILLs the rank at
a given training forward (MASK_KILL_AT, 1-based, rank MASK_KILL_RANK). Then runs argv[1]."""
import os, runpy, signal, sys
import torch
from espnet_ext.ssl import masking

_forward, _masks = masking.BestRQMasking.forward, []
_rank = os.environ.get("RANK", "0")
_out = os.path.join(os.environ["MASK_DIR"], f"rank{_rank}.pt")
_kill_at = int(os.environ.get("MASK_KILL_AT", "0"))

def forward(self, feats, pad_masks=None):
    masked, info = _forward(self, feats, pad_masks)
    if self.training:
        if _kill_at and len(_masks) + 1 == _kill_at and _rank == os.environ.get("MASK_KILL_RANK", "1"):
            os.kill(os.getpid(), signal.SIGKILL)
        _masks.append(info["input_mask"].cpu())
        torch.save(_masks, _out)
    return masked, info

masking.BestRQMasking.forward = forward
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
'''


def _identical_corpus(root: Path) -> Path:
    """8 copies of one utterance: every micro-batch of every rank holds the same features."""
    import kaldiio

    root.mkdir(parents=True)
    feats = np.random.default_rng(1).standard_normal((96, 80)).astype(np.float32)
    with (
        kaldiio.WriteHelper(f"ark,scp:{root}/feats.ark,{root}/feats.scp") as ark,
        open(root / "feats_shape", "w") as shape,
    ):
        for i in range(8):
            ark(f"utt{i:03d}", feats)
            shape.write(f"utt{i:03d} 96,80\n")
    return root


def _mask_run(work: Path, data: Path, name: str, *extra: str, kill_at: int = 0, expect_ok: bool = True):
    conf = yaml.safe_load((ROOT / "conf" / "pretrain_conformer_bestrq_embedded.yaml").read_text())
    conf.update(
        encoder_conf=dict(conf["encoder_conf"], output_size=32, attention_heads=2, linear_units=64,
                          num_blocks=2, subsampling_channels=8),
        loss=[{"name": "best_rq", "conf": dict(conf["loss"][0]["conf"], codebook_size=64)}],
        batch_type="sorted", batch_size=4, accum_grad=1, global_batch_utts=4, max_epoch=2,
        num_iters_per_epoch=2, num_workers=0, keep_nbest_models=1, save_every_steps=1,
        save_every_minutes=None, optim="sgd", optim_conf={"lr": 0.1}, scheduler=None, scheduler_conf={},
        iterator_type="sequence", valid_iterator_type="sequence",
    )  # fmt: skip
    config = work / "ssl.yaml"
    config.write_text(yaml.safe_dump(conf))
    (work / "ssl_tokens.txt").write_text("<blank>\n<unk>\n<sos/eos>\n")
    probe = work / "mask_probe.py"
    probe.write_text(_MASK_PROBE)
    masks = work / f"{name}.masks"
    masks.mkdir(exist_ok=True)
    d = str(data)
    command = [PY, str(probe), "espnet_ext.bin.ssl_train", "--config", str(config),
               "--token_list", str(work / "ssl_tokens.txt"),
               "--train_data_path_and_name_and_type", f"{d}/feats.scp,speech,kaldi_ark",
               "--train_shape_file", f"{d}/feats_shape",
               "--valid_data_path_and_name_and_type", f"{d}/feats.scp,speech,kaldi_ark",
               "--valid_shape_file", f"{d}/feats_shape", "--output_dir", str(work / name),
               "--resume", "true", *extra]  # fmt: skip
    env = dict(_env(), MASK_DIR=str(masks), MASK_KILL_AT=str(kill_at))
    r = subprocess.run([PY, "-m", "espnet_ext.bin.launch", "--ngpu", "0", "--cpu_procs", "2",
                        "--log", str(work / f"{name}.log"), "--", *command],
                       cwd=work, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    log = (work / f"{name}.log").read_text() if (work / f"{name}.log").exists() else ""
    if expect_ok:
        assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n{log[-4000:]}"
    else:
        assert r.returncode != 0, log[-4000:]
    return [torch.load(masks / f"rank{k}.pt") for k in (0, 1)], log


def test_ranks_draw_different_masks(tmp_path):
    """Two gloo ranks get identical micro-batches; with per-rank seeds (the default) their
    BEST-RQ span masks differ, and a run killed mid-epoch and resumed draws, and ends, as
    the straight run. With --seed_per_rank false they draw the same (ESPnet's behaviour)."""
    data = _identical_corpus(tmp_path / "same")
    (r0, r1), log = _mask_run(tmp_path, data, "straight")
    assert "rank 1/2: trains with" in log and "rank 0/2: trains with" in log  # each rank logs its amp plan
    assert len(r0) == len(r1) == 4  # 2 epochs x 2 micro-batches
    assert all(a.shape == b.shape for a, b in zip(r0, r1))
    assert all(a.any() for a in r0 + r1), "every micro-batch masks something"
    assert all(not torch.equal(a, b) for a, b in zip(r0, r1)), "ranks drew the same masks"

    (s0, s1), _ = _mask_run(tmp_path, data, "same_seed", "--seed_per_rank", "false")
    assert all(torch.equal(a, b) for a, b in zip(s0, s1)), "the control: same seed, same masks"
    assert torch.equal(torch.stack(s0), torch.stack(r0)), "rank 0 keeps ESPnet's seed + epoch"

    # Killed at rank 1's 4th training forward (epoch 2, after the step checkpoint at
    # micro-batch 1 of epoch 2), then resumed: the same masks and the same parameters.
    _mask_run(tmp_path, data, "resumed", kill_at=4, expect_ok=False)
    (k0, k1), log = _mask_run(tmp_path, data, "resumed")
    assert "resuming from step checkpoint" in log, log[-3000:]
    assert len(k1) >= 1
    for straight, resumed in ((r0, k0), (r1, k1)):
        for a, b in zip(straight[-len(resumed) :], resumed):
            assert torch.equal(a, b)
    a = torch.load(tmp_path / "straight" / "2epoch.pth", map_location="cpu")
    b = torch.load(tmp_path / "resumed" / "2epoch.pth", map_location="cpu")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=lambda m, k=k: f"{k}: {m}")
