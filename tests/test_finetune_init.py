"""Pre-trained encoder weights reach the ASR model unchanged (ESPnet's --init_param path),
and a fine-tuning config whose encoder does not match fails before any work, naming why."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import espnet_ext

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN = ROOT / "conf" / "pretrain_conformer_bestrq_embedded.yaml"
FINETUNE = ROOT / "conf" / "finetune_conformer_transformer_embedded.yaml"
DECODE = ROOT / "conf" / "decode_asr.yaml"


def _build(task, config: Path, tokens: Path, extra=()):
    args = task.get_parser().parse_args(["--config", str(config), "--token_list", str(tokens), *extra])
    return task.build_model(args)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    p = tmp_path_factory.mktemp("tok") / "tokens.txt"
    p.write_text("<blank>\n<unk>\nA\nB\nC\n<sos/eos>\n")
    return p


def test_encoder_weights_transfer_exactly(tmp_path, tokens):
    espnet_ext.register()
    from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

    from espnet_ext.tasks.asr import ASRTask
    from espnet_ext.tasks.ssl import SSLTask

    torch.manual_seed(1)
    ssl = _build(SSLTask, PRETRAIN, tokens)
    ckpt = tmp_path / "valid.loss.best.pth"
    torch.save(ssl.state_dict(), ckpt)
    torch.manual_seed(2)
    asr = _build(ASRTask, FINETUNE, tokens, ["--token_type", "char"])
    before = {k: v.clone() for k, v in asr.state_dict().items()}
    load_pretrained_model(f"{ckpt}:encoder:encoder", asr, ignore_init_mismatch=False)

    src = ssl.encoder.state_dict()
    dst = asr.encoder.state_dict()
    assert set(src) == set(dst) and len(src) > 20
    for k in src:
        assert torch.equal(src[k], dst[k]), k
    # Random initializations differ wherever they are random (LayerNorm's ones/zeros agree anyway).
    random_init = [k for k in src if src[k].dim() >= 2]
    assert all(not torch.equal(before[f"encoder.{k}"], dst[k]) for k in random_init)
    for k, v in asr.state_dict().items():  # decoder and CTC keep their own initialization
        if not k.startswith("encoder."):
            assert torch.equal(v, before[k]), k
    # The BEST-RQ quantizer and heads stay in the SSL checkpoint only.
    assert not any("codebooks" in k or "projection" in k for k in asr.state_dict())


def test_mismatched_encoder_fails_before_any_work(tmp_path):
    from espnet_ext.bin.check_config import ConfigError, check

    cfg = yaml.safe_load(FINETUNE.read_text())
    cfg["encoder_conf"]["num_blocks"] = 4
    cfg["encoder_conf"]["output_size"] = 192
    bad = tmp_path / "finetune_bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="does not match the pre-trained encoder") as e:
        check(PRETRAIN, bad, DECODE, init_from_pretrained=True)
    assert "vs fine-tune" in str(e.value)
    check(PRETRAIN, bad, DECODE, init_from_pretrained=False)  # from scratch: nothing to load


def test_unknown_key_and_bad_plugin_args_fail(tmp_path, capsys):
    from espnet_ext.bin.check_config import ConfigError, check

    cfg = yaml.safe_load(FINETUNE.read_text())
    cfg["no_such_option"] = 1
    bad = tmp_path / "finetune_unknown.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="argument parser"):
        check(PRETRAIN, bad, DECODE, init_from_pretrained=True)
    assert "unrecognized arguments: no_such_option" in capsys.readouterr().err

    cfg = yaml.safe_load(FINETUNE.read_text())
    cfg["encoder_conf"]["attention_heads"] = 5  # 144 is not divisible by 5
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="cannot build the model"):
        check(PRETRAIN, bad, DECODE, init_from_pretrained=True)

    dec = tmp_path / "decode_bad.yaml"
    dec.write_text("beam_size: 4\nbeem_size: 3\n")
    with pytest.raises(ConfigError, match="unknown decoding options"):
        check(PRETRAIN, FINETUNE, dec, init_from_pretrained=True)


def test_cli_accepts_the_shipped_configs():
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_ext.bin.check_config",
            "--pretrain_config",
            str(PRETRAIN),
            "--finetune_config",
            str(FINETUNE),
            "--decode_config",
            str(DECODE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "configs OK" in r.stderr


def test_encoder_lr_scale_builds_two_groups_and_schedules_both(tokens):
    espnet_ext.register()
    from espnet2.tasks.abs_task import scheduler_classes

    from espnet_ext.tasks.asr import ASRTask

    parser = ASRTask.get_parser()
    args = parser.parse_args(
        [
            "--config",
            str(FINETUNE),
            "--token_list",
            str(tokens),
            "--token_type",
            "char",
            "--encoder_lr_scale",
            "0.25",
        ]
    )
    model = ASRTask.build_model(args)
    (opt,) = ASRTask.build_optimizers(args, model)
    lr = args.optim_conf["lr"]
    assert [g["lr"] for g in opt.param_groups] == [lr, lr * 0.25]
    n_enc = sum(p.numel() for p in model.encoder.parameters())
    assert sum(p.numel() for p in opt.param_groups[1]["params"]) == n_enc
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(
        p.numel() for p in model.parameters()
    )
    sched = scheduler_classes[args.scheduler](opt, **args.scheduler_conf)
    for _ in range(args.scheduler_conf["warmup_steps"]):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([lr, lr * 0.25])
