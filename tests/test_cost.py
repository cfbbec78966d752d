"""The cost and schedule arithmetic: the analytic FLOP count against FlopCounterMode on
small real models of the project, the cost projection, passes and the schedule check."""

import math
from pathlib import Path

import pytest
import torch
import yaml

from espnet_ext.distributed import cost

REPO = Path(__file__).resolve().parents[1]

_ENCODER = {
    "encoder": "ssl_conformer",
    "encoder_conf": {"output_size": 64, "attention_heads": 4, "linear_units": 256, "num_blocks": 2,
                     "cnn_module_kernel": 15, "dropout_rate": 0.1, "attention_dropout_rate": 0.1},
    "frontend": "logmel",
    "normalize": None,
    "preencoder": None,
    "specaug": None,
}
_SSL = dict(_ENCODER, loss=[{"name": "best_rq", "conf": {"codebook_size": 512, "codebook_dim": 16,
                                                          "stack_frames": 4, "seed": 0}}],
            util=[{"name": "block_mask", "conf": {"mask_prob": 0.01, "span_ms": 400, "noise_std": 0.1}}])
_ASR = dict(_ENCODER, specaug=None, decoder="transformer",
            decoder_conf={"attention_heads": 4, "linear_units": 256, "num_blocks": 2},
            model_conf={"ctc_weight": 0.3, "lsm_weight": 0.1})


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


def counted_flops(model, task: str, frames: int, tokens: int = 0) -> int:
    """FlopCounterMode's count of one training forward + backward of one utterance."""
    torch.manual_seed(0)
    model.train()
    batch = {"speech": torch.randn(1, frames, 80), "speech_lengths": torch.tensor([frames])}
    if task == "asr":
        batch.update(text=torch.randint(1, 30, (1, tokens)), text_lengths=torch.tensor([tokens]))
    counts = cost.count_training_flops(lambda: model(**batch)[0].backward())
    assert counts["raw"] > counts["flops"]  # torch over-counts the depthwise conv's weight gradient
    return counts["flops"]


@pytest.mark.parametrize("frames", [250, 1500])
def test_formula_matches_flop_counter_on_an_ssl_model(tmp_path, frames):
    model = build("ssl", _SSL, tmp_path)
    measured = counted_flops(model, "ssl", frames)
    shape = cost.model_shape(_SSL, "ssl")
    predicted = cost.flops_per_utterance(shape, frames / 100)
    # the masked share of the loss head is random (its expectation is counted)
    assert predicted == pytest.approx(measured, rel=0.02), (predicted, measured)


@pytest.mark.parametrize("frames,tokens", [(250, 8), (1500, 50)])
def test_formula_matches_flop_counter_on_an_asr_model(tmp_path, frames, tokens):
    model = build("asr", _ASR, tmp_path, vocab=100)
    measured = counted_flops(model, "asr", frames, tokens)
    shape = cost.model_shape(_ASR, "asr", vocab_size=100)
    predicted = cost.flops_per_utterance(shape, frames / 100, tokens=tokens)
    assert predicted == pytest.approx(measured, rel=0.02), (predicted, measured)
