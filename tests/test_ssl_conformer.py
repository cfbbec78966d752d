"""Tests for espnet_ext.nets.ssl_conformer.SSLConformerEncoder."""

import logging

import pytest
import torch
import yaml
from typeguard import TypeCheckError

from espnet_ext.nets import conformer_blocks, ssl_conformer
from espnet_ext.nets.ssl_conformer import SSLConformerEncoder, subsampled_lengths

TINY = dict(
    input_size=80,
    output_size=32,
    attention_heads=2,
    linear_units=64,
    num_blocks=2,
    cnn_module_kernel=7,
    subsampling_channels=8,
)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads; on a shared machine they only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(seed: int = 0, **overrides) -> SSLConformerEncoder:
    torch.manual_seed(seed)
    return SSLConformerEncoder(**{**TINY, **overrides})


def pad_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """True at padding, like ESPnet's make_pad_mask."""
    return torch.arange(width)[None, :] >= lengths[:, None]


def batch_with_garbage_padding(lengths, seed: int = 1) -> torch.Tensor:
    """Random features; frames beyond each length hold large junk values."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), 80, generator=g)
    junk = 100.0 * torch.randn(x.shape, generator=g)
    return torch.where(pad_mask(torch.tensor(lengths), x.size(1))[..., None], junk, x)


# --------------------------------------------------------------------------- lengths


@pytest.mark.parametrize("frames", list(range(1, 26)) + [99, 100, 101, 102, 103, 1000])
def test_output_length_is_ceil_quarter(frames):
    enc = tiny().eval()
    lengths = torch.tensor([frames, max(1, frames // 2), 1])
    x = torch.randn(3, frames, 80)
    with torch.no_grad():
        out, olens, state = enc(x, lengths)
    assert state is None
    assert out.shape == (3, (frames + 3) // 4, 32)
    assert olens.tolist() == [(n + 3) // 4 for n in lengths.tolist()]
    assert subsampled_lengths(lengths).tolist() == olens.tolist()


def test_subsampled_frame_sees_its_four_input_frames():
    """Output frame t sees input frames 4t-2 .. 4t+4 only, and all of 4t .. 4t+3."""
    enc = tiny(subsampling_channels=16)
    frames = 41
    x = torch.randn(1, frames, 80, requires_grad=True)
    y, _ = enc.embed(x, torch.tensor([frames]))
    assert y.size(1) == (frames + 3) // 4
    for t in range(y.size(1)):
        (grad,) = torch.autograd.grad(y[0, t].sum(), x, retain_graph=True)
        seen = set(torch.nonzero(grad[0].abs().sum(-1)).flatten().tolist())
        assert seen <= set(range(4 * t - 2, 4 * t + 5)), (t, sorted(seen))
        assert set(range(4 * t, min(4 * t + 4, frames))) <= seen, (t, sorted(seen))


# ------------------------------------------------------------------ padding invariance


def assert_padding_invariant(enc, lengths):
    x = batch_with_garbage_padding(lengths)
    with torch.no_grad():
        (out, hs), olens, _ = enc(x, torch.tensor(lengths), return_all_hs=True)
        for i, n in enumerate(lengths):
            (alone, hs_alone), olen, _ = enc(x[i : i + 1, :n], torch.tensor([n]), return_all_hs=True)
            m = int(olen)
            assert m == int(olens[i]) == alone.size(1)
            torch.testing.assert_close(out[i, :m], alone[0], rtol=1e-4, atol=1e-4)
            for h, h_alone in zip(hs, hs_alone):
                torch.testing.assert_close(h[i, :m], h_alone[0], rtol=1e-4, atol=1e-4)
            assert torch.all(out[i, m:] == 0)
            assert all(torch.all(h[i, m:] == 0) for h in hs)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("kernel", [1, 3, 7, 15])
@pytest.mark.parametrize("lengths", [[37, 9], [50, 1, 23, 48], [13, 14, 15, 16]])
def test_padding_invariance(mode, kernel, lengths):
    enc = tiny(
        cnn_module_kernel=kernel,
        dropout_rate=0.0,
        positional_dropout_rate=0.0,
        attention_dropout_rate=0.0,
    )
    enc.train(mode == "train")
    assert_padding_invariant(enc, lengths)


def test_padding_invariance_batch_norm_eval():
    enc = tiny(cnn_module_norm="batch_norm")
    enc.train()
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        enc(torch.randn(4, 60, 80), torch.tensor([60, 40, 30, 12]))
    enc.eval()
    assert_padding_invariant(enc, [45, 7, 30])


def test_padding_invariance_without_conv_module_or_macaron():
    enc = tiny(use_cnn_module=False, macaron_style=False).eval()
    assert_padding_invariant(enc, [33, 10])


# ------------------------------------------------------------------- masks and ilens


def test_masks_argument_matches_ilens():
    enc = tiny().eval()
    lengths = torch.tensor([40, 17, 3])
    x = batch_with_garbage_padding(lengths.tolist())
    with torch.no_grad():
        ref, ref_lens, _ = enc(x, lengths)
        for ilens in (lengths, None):
            out, olens, _ = enc(x, ilens, masks=pad_mask(lengths, 40))
            torch.testing.assert_close(out, ref)
            assert torch.equal(olens, ref_lens)
        # ESPnet builds masks from the lengths; xs_pad may be longer than that
        longer = torch.cat([x, torch.randn(3, 8, 80)], dim=1)
        out, olens, _ = enc(longer, lengths, masks=pad_mask(lengths, 40))
        assert out.size(1) == (48 + 3) // 4
        torch.testing.assert_close(out[:, : ref.size(1)], ref)
        assert torch.all(out[:, ref.size(1) :] == 0)


@pytest.mark.parametrize(
    "ilens, masks, match",
    [
        (torch.tensor([10, 5]), pad_mask(torch.tensor([10, 6]), 10), "disagree"),
        (None, torch.tensor([[False] * 5 + [True, False] + [True] * 3] * 2), "end"),
        (None, pad_mask(torch.tensor([10, 5]), 10).float(), "bool"),
        (None, None, "neither"),
        (torch.tensor([11, 5]), None, r"\[1, 10\]"),
        (torch.tensor([10, 0]), None, r"\[1, 10\]"),
        (torch.tensor([10.0, 5.0]), None, "integer"),
    ],
)
def test_bad_lengths_raise(ilens, masks, match):
    enc = tiny()
    with pytest.raises(ValueError, match=match):
        enc(torch.randn(2, 10, 80), ilens, masks=masks)


def test_bad_feature_shape_raises():
    with pytest.raises(ValueError, match="xs_pad"):
        tiny()(torch.randn(2, 10, 40), torch.tensor([10, 10]))


# ----------------------------------------------------------------- return_all_hs


def test_return_all_hs_structure():
    enc = tiny(num_blocks=3).eval()
    with torch.no_grad():
        # Each block already ends in a LayerNorm: at its initial scale 1 and bias 0
        # the final LayerNorm is the identity up to eps and rounding.
        enc.after_norm.weight.fill_(2.0)
    x, lengths = torch.randn(2, 30, 80), torch.tensor([30, 21])
    with torch.no_grad():
        plain, plain_lens, _ = enc(x, lengths)
        result, olens, state = enc(x, lengths, return_all_hs=True)
    assert state is None and torch.equal(olens, plain_lens)
    assert isinstance(result, tuple) and len(result) == 2
    out, hs = result
    assert isinstance(hs, list) and len(hs) == 3
    assert all(h.shape == out.shape == (2, 8, 32) for h in hs)
    torch.testing.assert_close(out, plain)
    # the final output is the last block's output through the final LayerNorm
    torch.testing.assert_close(out[1, :6], enc.after_norm(hs[-1][1, :6]))
    assert not torch.allclose(hs[-1], out)


def test_inside_espnet_ssl_model_encode():
    from espnet2.ssl.espnet_model import ESPnetSSLModel

    enc = tiny(num_blocks=3)
    model = ESPnetSSLModel(
        frontend=None,
        specaug=None,
        normalize=None,
        preencoder=None,
        encoder=enc,
        losses=[],
        util_attributes=set(),
        required_inputs=set(),
        util_modules=torch.nn.ModuleDict(),
        token_list=["<blank>", "<unk>", "<sos/eos>"],
    )
    speech, lengths = torch.randn(3, 45, 80), torch.tensor([45, 30, 9])
    data = model.encode(speech, lengths)
    hs = data["encoder_output"]
    assert len(hs) == 3
    assert data["encoder_output_lengths"].tolist() == [12, 8, 3]
    enc.eval()
    model.eval()
    with torch.no_grad():
        data = model.encode(speech, lengths)
        final, _, _ = enc(speech, lengths)
    torch.testing.assert_close(data["encoder_output"][-1], final)


def test_inside_espnet_asr_model_with_ctc_and_transformer_decoder():
    from espnet2.asr.ctc import CTC
    from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
    from espnet2.asr.espnet_model import ESPnetASRModel

    token_list = ["<blank>", "<unk>", "a", "b", "c", "<space>", "<sos/eos>"]
    vocab = len(token_list)
    enc = tiny()
    torch.manual_seed(0)
    model = ESPnetASRModel(
        vocab_size=vocab,
        token_list=token_list,
        frontend=None,
        specaug=None,
        normalize=None,
        preencoder=None,
        encoder=enc,
        postencoder=None,
        decoder=TransformerDecoder(
            vocab, enc.output_size(), attention_heads=2, linear_units=32, num_blocks=1
        ),
        ctc=CTC(vocab, enc.output_size()),
        joint_network=None,
        ctc_weight=0.3,
        report_cer=False,
        report_wer=False,
    )
    speech, speech_lengths = torch.randn(2, 64, 80), torch.tensor([64, 41])
    text = torch.tensor([[2, 3, 5, 4], [4, 2, -1, -1]])
    text_lengths = torch.tensor([4, 2])
    loss, stats, weight = model(speech, speech_lengths, text, text_lengths)
    assert torch.isfinite(loss) and loss.item() > 0
    assert torch.isfinite(stats["loss_ctc"]) and torch.isfinite(stats["loss_att"])
    loss.backward()
    assert enc.embed.conv1.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out, out_lens = model.encode(speech, speech_lengths)
    assert out.shape == (2, 16, 32) and out_lens.tolist() == [16, 11]


# ------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(output_size=30, attention_heads=4), "divisible"),
        (dict(output_size=30, attention_heads=2), "even"),
        (dict(cnn_module_kernel=8), "odd"),
        (dict(input_layer="conv2d6"), "input_layer"),
        (dict(input_layer=None), "input_layer"),
        (dict(normalize_before=False), "normalize_before"),
        (dict(activation_type="tanh"), "activation_type"),
        (dict(cnn_module_norm="group_norm"), "cnn_module_norm"),
        (dict(dropout_rate=1.0), "dropout_rate"),
        (dict(num_blocks=0), "num_blocks"),
        (dict(subsampling_channels=0), "subsampling_channels"),
        (dict(rotary_base=1.0), "rotary_base"),
        (dict(concat_after=True), "concat_after"),
        (dict(positionwise_layer_type="conv1d"), "positionwise_layer_type"),
        (dict(interctc_layer_idx=[1]), "interctc_layer_idx"),
        (dict(stochastic_depth_rate=0.1), "stochastic_depth_rate"),
        (dict(layer_drop_rate=0.1), "layer_drop_rate"),
        (dict(qk_norm=True), "qk_norm"),
    ],
)
def test_invalid_config_raises(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny(**overrides)


def test_wrong_type_is_rejected_by_typeguard():
    with pytest.raises(TypeCheckError):
        tiny(output_size="32")


ESPNET_CONFORMER_CONF = """
encoder: conformer
encoder_conf:
    output_size: 32
    attention_heads: 2
    linear_units: 64
    num_blocks: 2
    dropout_rate: 0.1
    positional_dropout_rate: 0.1
    attention_dropout_rate: 0.1
    input_layer: conv2d
    normalize_before: true
    macaron_style: true
    rel_pos_type: latest
    pos_enc_layer_type: rel_pos
    selfattention_layer_type: rel_selfattn
    activation_type: swish
    use_cnn_module: true
    cnn_module_kernel: 15
    zero_triu: false
    max_pos_emb_len: 5000
"""


def test_espnet_style_encoder_conf_is_accepted(caplog):
    from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

    conf = yaml.safe_load(ESPNET_CONFORMER_CONF)["encoder_conf"]
    ConformerEncoder(input_size=80, **conf)  # the block is a valid stock config
    with caplog.at_level(logging.INFO, logger=ssl_conformer.__name__):
        enc = SSLConformerEncoder(input_size=80, **conf)
    ignored = caplog.text
    for key in ("pos_enc_layer_type", "selfattention_layer_type", "rel_pos_type"):
        assert key in ignored
    assert "rotary" in ignored
    assert enc.output_size() == 32 and len(enc.encoders) == 2
    out, olens, _ = enc(torch.randn(2, 20, 80), torch.tensor([20, 13]))
    assert out.shape == (2, 5, 32) and olens.tolist() == [5, 4]


# ------------------------------------------------------------------ parameters


def test_state_dict_has_no_position_tables():
    enc = tiny(num_blocks=1)
    params = {name for name, _ in enc.named_parameters()}
    keys = set(enc.state_dict())
    assert keys == params  # no buffers: rotary tables are computed per length
    assert not any(word in key for key in keys for word in ("rot", "pos", "cos", "sin", "freq"))
    bn = tiny(num_blocks=1, cnn_module_norm="batch_norm")
    extra = set(bn.state_dict()) - {name for name, _ in bn.named_parameters()}
    assert extra and all(".conv.conv_norm." in key for key in extra)


def test_gradient_reaches_every_parameter():
    enc = tiny().train()
    out, olens, _ = enc(torch.randn(2, 33, 80), torch.tensor([33, 20]))
    (out * torch.randn_like(out)).sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_state_dict_loads_strictly_into_second_instance():
    a, b = tiny(seed=0).eval(), tiny(seed=1).eval()
    x, lengths = torch.randn(2, 25, 80), torch.tensor([25, 18])
    with torch.no_grad():
        assert not torch.allclose(a(x, lengths)[0], b(x, lengths)[0])
        b.load_state_dict(a.state_dict(), strict=True)
        torch.testing.assert_close(a(x, lengths)[0], b(x, lengths)[0])


# ------------------------------------------------------------------- attention


def test_rotary_scores_depend_only_on_relative_position():
    cos, sin = conformer_blocks._rotary_tables(64, 16, 10000.0, torch.device("cpu"))
    q, k = torch.randn(16), torch.randn(16)
    qs = conformer_blocks._apply_rotary(q.expand(64, 16), cos, sin)
    ks = conformer_blocks._apply_rotary(k.expand(64, 16), cos, sin)
    scores = qs @ ks.T  # (64, 64), entry (m, n) = <R_m q, R_n k>
    for offset in (-9, 0, 5, 30):
        diag = torch.diagonal(scores, offset)
        torch.testing.assert_close(diag, diag[0].expand_as(diag), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(scores[0, 0], scores[0, 5])


def test_attention_goes_through_sdpa_with_key_padding_mask(monkeypatch):
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kwargs):
        calls.append((q.shape, None if attn_mask is None else attn_mask))
        return sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    enc = tiny().eval()
    with torch.no_grad():
        enc(torch.randn(2, 40, 80), torch.tensor([40, 21]))
        enc(torch.randn(2, 40, 80), torch.tensor([40, 38]))  # no padding after 4x
    assert len(calls) == 4
    (shape, mask), (_, mask2), (_, full1), (_, full2) = calls
    assert shape == (2, 2, 10, 16)
    assert mask.dtype == torch.bool and mask.shape == (2, 1, 1, 10)
    assert mask[0].all() and mask[1, 0, 0].tolist() == [True] * 6 + [False] * 4
    assert mask2 is mask or torch.equal(mask2, mask)
    # unpadded batch: still a mask (knowing it is unpadded needs a host sync)
    assert full1.shape == (2, 1, 1, 10) and full1.all() and torch.equal(full1, full2)


def test_runs_under_bf16_autocast():
    enc = tiny().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, olens, _ = enc(torch.randn(2, 30, 80), torch.tensor([30, 12]))
    assert torch.isfinite(out.float()).all()
    out.float().sum().backward()
    assert torch.isfinite(enc.embed.conv1.weight.grad).all()


@pytest.mark.parametrize("rows,cols", [(12, 10), (13, 11), (1, 1), (2, 3)])
def test_stride2_conv_gradients_equal_atens(rows, cols):
    """The subsampling's second conv runs its forward and input gradient
    channels-last and its weight gradient in NCHW; output and every gradient
    equal ATen's conv2d's."""
    from espnet_ext.nets.subsampling import _conv_stride2

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 5, kernel_size=3, stride=2, padding=1)
    x = torch.randn(3, 6, rows, cols, requires_grad=True)
    grads = {}
    for name, fn in (("ours", lambda: _conv_stride2(conv, x)), ("aten", lambda: conv(x))):
        out = fn()
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        grads[name] = torch.autograd.grad((out * weight).sum(), (x, conv.weight, conv.bias))
        grads[name + "_out"] = out.detach()
    torch.testing.assert_close(grads["ours_out"], grads["aten_out"])
    for ours, aten in zip(grads["ours"], grads["aten"]):
        torch.testing.assert_close(ours, aten, rtol=1e-5, atol=1e-5)


def test_stride2_conv_follows_bf16_autocast():
    from espnet_ext.nets.subsampling import _conv_stride2

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 4, kernel_size=3, stride=2, padding=1)
    x = torch.randn(2, 4, 9, 8, requires_grad=True)
    grads = []
    for fn in (lambda: _conv_stride2(conv, x), lambda: conv(x)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn()
        assert out.dtype == torch.bfloat16
        grads.append(torch.autograd.grad(out.float().sum(), (x, conv.weight)))
    for ours, aten in zip(*grads):
        assert ours.dtype == aten.dtype == torch.float32
        torch.testing.assert_close(ours, aten, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("rows,cols", [(13, 11), (3, 3), (8, 6)])
@pytest.mark.parametrize("autocast", [False, True])
def test_first_conv_equals_atens(rows, cols, autocast):
    """The first conv as one matrix product into channels-last, with the length
    mask and ReLU fused, equals nn.Conv2d + mask + ReLU: output, weight and bias
    gradients, in float32 and under bf16 autocast."""
    from espnet_ext.nets.subsampling import _conv_first_masked_relu, _masked_relu_

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 6, kernel_size=3, stride=2)
    x = torch.randn(3, 1, rows, cols)
    out_rows = (rows - 3) // 2 + 1
    lengths = torch.tensor([max(1, out_rows - 1), 1, out_rows])  # padded, padded, full
    results = []
    for fn in (
        lambda: _conv_first_masked_relu(conv, x, lengths),
        lambda: _masked_relu_(conv(x), lengths),
    ):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = fn()
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        grads = torch.autograd.grad((out.float() * weight).sum(), (conv.weight, conv.bias))
        results.append((out.float(), grads, out.dtype, out.is_contiguous(memory_format=torch.channels_last)))
    (ours, ours_grads, ours_dtype, ours_layout), (aten, aten_grads, aten_dtype, _) = results
    assert ours_dtype == aten_dtype
    tol = dict(rtol=2e-2, atol=2e-2) if autocast else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours, aten, **tol)
    assert ours_layout  # written channels-last, the layout the second conv runs in
    if out_rows > 1:  # frames at or past each length are zero
        assert (ours[0, :, out_rows - 1 :] == 0).all() and (ours[1, :, 1:] == 0).all()
        assert (aten[0, :, : out_rows - 1] != 0).any()
    for a, b in zip(ours_grads, aten_grads):
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b, **tol)


# ---------------------------------------------------------- no host syncs


def test_encoder_and_loss_compile_without_graph_breaks():
    """Masking, encoder and BEST-RQ loss of a padded batch trace into ONE graph:
    no .item() / .tolist() / bool(tensor) / data-dependent shape on the training
    forward, so nothing in it makes the host wait for the device."""
    import torch._dynamo

    from espnet_ext.ssl.best_rq import BestRQLoss
    from espnet_ext.ssl.masking import BestRQMasking

    torch.manual_seed(0)
    enc = tiny().train()
    masking = BestRQMasking(mask_prob=0.05)
    loss_fn = BestRQLoss(encoder_output_size=32, codebook_size=64)

    def step(feats, lengths):
        pad = torch.arange(feats.shape[1])[None, :] >= lengths[:, None]
        masked, info = masking(feats, pad)
        (_, hs), olens, _ = enc(masked, lengths, masks=pad, return_all_hs=True)
        return loss_fn(hs, olens, feats, lengths, info)

    feats, lengths = torch.randn(3, 61, 80), torch.tensor([61, 40, 17])
    torch._dynamo.reset()
    explained = torch._dynamo.explain(step)(feats, lengths)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1

    compiled = torch.compile(step, fullgraph=True, backend="eager")
    state = torch.get_rng_state()
    loss, stats = compiled(feats, lengths)
    torch.set_rng_state(state)
    loss_ref, stats_ref = step(feats, lengths)
    torch.testing.assert_close(loss, loss_ref)
    assert stats.keys() == stats_ref.keys()
    for key, value in stats.items():
        assert value.dim() == 0 and not value.requires_grad
        torch.testing.assert_close(value, stats_ref[key])
    loss.backward()
    # every block gets a gradient (the final LayerNorm is not in hs)
    missing = [n for n, p in enc.named_parameters() if p.grad is None]
    assert missing == ["after_norm.weight", "after_norm.bias"]
    torch._dynamo.reset()


def test_value_checks_stay_in_compiled_graph():
    """Under torch.compile a bad length is a device-side assert, not a break."""
    import torch._dynamo

    enc = tiny()
    compiled = torch.compile(enc, fullgraph=True, backend="eager")
    x = torch.randn(2, 10, 80)
    out, olens, _ = compiled(x, torch.tensor([10, 5]))
    assert out.shape == (2, 3, 32) and olens.tolist() == [3, 2]
    with pytest.raises(RuntimeError):
        compiled(x, torch.tensor([11, 5]))
    torch._dynamo.reset()
