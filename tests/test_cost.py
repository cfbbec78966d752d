"""The cost and schedule arithmetic: the analytic FLOP count against FlopCounterMode on
small real models of the project, the cost projection, passes and the schedule check."""

from pathlib import Path
from typing import Optional

import pytest
import torch
import yaml

from espnet_ext.distributed import cost

REPO = Path(__file__).resolve().parents[1]

_ENCODER = {
    "encoder": "ssl_conformer",
    "encoder_conf": {
        "output_size": 64,
        "attention_heads": 4,
        "linear_units": 256,
        "num_blocks": 2,
        "cnn_module_kernel": 15,
        "dropout_rate": 0.1,
        "attention_dropout_rate": 0.1,
    },
    "frontend": "logmel",
    "normalize": None,
    "preencoder": None,
    "specaug": None,
}
_SSL = dict(
    _ENCODER,
    loss=[
        {"name": "best_rq", "conf": {"codebook_size": 512, "codebook_dim": 16, "stack_frames": 4, "seed": 0}}
    ],
    util=[{"name": "block_mask", "conf": {"mask_prob": 0.01, "span_ms": 400, "noise_std": 0.1}}],
)
_ASR = dict(
    _ENCODER,
    specaug=None,
    decoder="transformer",
    decoder_conf={"attention_heads": 4, "linear_units": 256, "num_blocks": 2},
    model_conf={"ctc_weight": 0.3, "lsm_weight": 0.1},
)


def build(task: str, conf: dict, tmp: Path, vocab: int = 0):
    """The project's model of ``conf``, built by its task as the trainer builds it."""
    import espnet_ext

    espnet_ext.register()
    from espnet_ext.tasks.asr import ASRTask
    from espnet_ext.tasks.ssl import SSLTask

    path = tmp / f"{task}.yaml"
    path.write_text(yaml.safe_dump(conf))
    tokens = tmp / "tokens.txt"
    n = vocab if task == "asr" else 3
    tokens.write_text("\n".join(["<blank>", "<unk>", *(f"t{i}" for i in range(n - 3)), "<sos/eos>"]) + "\n")
    cls = ASRTask if task == "asr" else SSLTask
    args = cls.get_parser().parse_args(["--config", str(path), "--token_list", str(tokens)])
    return cls.build_model(args)


def counted_flops(model, task: str, frames: int, tokens: int = 0, stats: Optional[dict] = None) -> int:
    """FlopCounterMode's count of one training forward + backward of one utterance;
    ``stats``, if given, receives the model's stats of that step."""
    torch.manual_seed(0)
    model.train()
    batch = {"speech": torch.randn(1, frames, 80), "speech_lengths": torch.tensor([frames])}
    if task == "asr":
        batch.update(text=torch.randint(1, 30, (1, tokens)), text_lengths=torch.tensor([tokens]))

    def step():
        loss, step_stats, _ = model(**batch)
        loss.backward()
        if stats is not None:
            stats.update(step_stats)

    counts = cost.count_training_flops(step)
    assert counts["raw"] > counts["flops"]  # torch over-counts the depthwise conv's weight gradient
    return counts["flops"]


@pytest.mark.parametrize("frames", [250, 1500])
def test_formula_matches_flop_counter_on_an_ssl_model(tmp_path, frames):
    model = build("ssl", _SSL, tmp_path)
    stats = {}
    measured = counted_flops(model, "ssl", frames, stats=stats)
    shape = cost.model_shape(_SSL, "ssl")
    # On the CPU in eager mode the BEST-RQ heads score only the masked frames; the
    # formula's default (every frame) is the accelerator's path.
    frames_enc = cost.encoder_frames(frames)
    masked = round(float(stats["bestrq_mask_frac"]) * frames_enc)
    assert 0 < masked < frames_enc
    predicted = cost.flops_per_utterance(shape, frames / 100, scored_frames=masked)
    assert predicted == pytest.approx(measured, rel=0.02), (predicted, measured)


@pytest.mark.parametrize("frames,tokens", [(250, 8), (1500, 50)])
def test_formula_matches_flop_counter_on_an_asr_model(tmp_path, frames, tokens):
    model = build("asr", _ASR, tmp_path, vocab=100)
    measured = counted_flops(model, "asr", frames, tokens)
    shape = cost.model_shape(_ASR, "asr", vocab_size=100)
    predicted = cost.flops_per_utterance(shape, frames / 100, tokens=tokens)
    assert predicted == pytest.approx(measured, rel=0.02), (predicted, measured)


# ---------------------------------------------------------------------------------------
# The schedule against the data: hours, passes, max_passes, total_steps, the projection

CONF = REPO / "egs2/librispeech_ssl/asr1/conf"


def _launch(capsys, *argv):
    from espnet_ext.bin.launch import main

    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _full(tmp_path, config, *extra, module="espnet_ext.bin.ssl_train"):
    return [
        "--backend",
        "slurm",
        "--ngpu",
        "8",
        "--num_nodes",
        "16",
        "--log",
        tmp_path / "train.log",
        "--dry_run",
        "true",
        *extra,
        "--",
        "python",
        "-m",
        module,
        "--config",
        config,
        "--output_dir",
        tmp_path / "exp",
    ]


def test_the_seed_configs_on_public_data_are_many_passes_and_fine_tuning_stops(capsys, tmp_path):
    # The seed's pre-training on ~61k h: 400k x 2048 x 15 s / 61,165 h = ~56 passes (printed).
    rc, out, err = _launch(
        capsys, *_full(tmp_path, CONF / "pretrain_conformer_bestrq.yaml", "--data_hours", "61165")
    )
    assert rc == 0, err
    assert "400,000 optimizer updates over 61,165 h of data (mean 15.0 s per utterance) = 55.8 passes" in out
    assert "scheduler total_steps 400,000: matches the 400,000 updates" in out
    assert "0.813 days at 40%" in out  # 2.80e15 FLOPs x 400k / (128 x 312e12 x 0.4)
    # The seed's fine-tuning on LibriSpeech 960 h: ~730 passes, past max_passes 20: stops.
    argv = _full(
        tmp_path,
        CONF / "finetune_conformer_transformer.yaml",
        "--data_hours",
        "961",
        "--mean_utt_seconds",
        "12.3",
        "--max_passes",
        "20",
        module="espnet_ext.bin.asr_train",
    )
    rc, out, err = _launch(capsys, *argv)
    assert rc == 2 and "= 729 passes over it (max_passes 20)" in out
    assert "Change max_epoch 80 -> 2" in err and "--accept_passes true" in err
    argv.insert(argv.index("--"), "--accept_passes")
    argv.insert(argv.index("--"), "true")
    rc, out, err = _launch(capsys, *argv)
    assert rc == 0 and "accepted (--accept_passes true): 100,000 optimizer updates are 729 passes" in out


def test_the_public_configs_fit_their_hours(capsys, tmp_path):
    rc, out, err = _launch(
        capsys,
        *_full(tmp_path, CONF / "tuning/pretrain_conformer_bestrq_public.yaml", "--data_hours", "61165"),
    )
    assert rc == 0 and "80,000 optimizer updates over 61,165 h" in out and "= 11.2 passes" in out
    argv = _full(
        tmp_path,
        CONF / "tuning/finetune_conformer_transformer_public.yaml",
        "--data_hours",
        "961",
        "--mean_utt_seconds",
        "12.3",
        "--max_passes",
        "20",
        module="espnet_ext.bin.asr_train",
    )
    rc, out, err = _launch(capsys, *argv)
    assert rc == 0, err
    assert "10,000 optimizer updates over 961 h of data (mean 12.3 s per utterance) = 18.2 passes" in out


def test_total_steps_that_the_run_does_not_make_stop_the_launch(capsys, tmp_path):
    argv = _full(tmp_path, CONF / "pretrain_conformer_bestrq.yaml")
    rc, out, err = _launch(capsys, *argv, "--max_epoch", "100")
    assert rc == 2
    assert (
        "total_steps in the config is 400,000, but the run makes max_epoch 100 x num_iters_per_epoch "
        "10,000 / accum_grad 8 = 125,000 optimizer updates"
    ) in err
    assert "Change total_steps 400,000 -> 125,000" in err
    # ESPnet's --scheduler_conf key=value updates the config's: consistent again
    rc, out, err = _launch(capsys, *argv, "--max_epoch", "100", "--scheduler_conf", "total_steps=125000")
    assert rc == 0, err


def test_hours_come_from_the_shape_file(tmp_path):
    from espnet_ext.distributed.batch import batch_arithmetic
    from espnet_ext.distributed.batch_settings import data_size, read_batch_settings
    from espnet_ext.distributed.geometry import Geometry
    from espnet_ext.distributed.schedule import check_schedule

    shape = tmp_path / "feats_shape"
    shape.write_text("".join(f"u{i} {1200 + 600 * (i % 2)},80\n" for i in range(1000)))  # 12 s, 18 s
    cmd = [
        "python",
        "-m",
        "espnet_ext.bin.ssl_train",
        "--config",
        str(CONF / "pretrain_conformer_bestrq.yaml"),
        "--train_shape_file",
        str(shape),
    ]
    settings = read_batch_settings(cmd)
    geometry = Geometry("slurm", 8, 16)
    a = batch_arithmetic(settings, geometry, data_size(settings))
    s = check_schedule(cmd, a, geometry, max_passes=1e6)
    assert s.hours == pytest.approx(1000 * 15 / 3600) and s.utt_seconds == pytest.approx(15.0)
    assert s.passes == pytest.approx(320 * 10_000 / (1000 // 256))
    assert s.cost.utt_seconds == pytest.approx(15.0) and s.cost.gpus == 128


def test_projection_arithmetic():
    shape = cost.model_shape(yaml.safe_load((CONF / "pretrain_conformer_bestrq.yaml").read_text()), "ssl")
    p = cost.project_cost(
        shape, total_steps=1000, utts_per_update=2048, utt_seconds=15, gpus=128, flops_per_update=1e15
    )
    assert p.seconds_per_update(0.4) == pytest.approx(1e15 / (128 * 312e12 * 0.4))
    assert p.days(0.5) == pytest.approx(1000 * 1e15 / (128 * 312e12 * 0.5) / 86400)
    # ~6 x 0.59e9 parameters x 768k encoder frames, plus attention and subsampling
    per_update = 2048 * cost.flops_per_utterance(shape, 15.0)
    assert 6 * 0.59e9 * 2048 * 375 < per_update < 1.1 * 6 * 0.59e9 * 2048 * 375
