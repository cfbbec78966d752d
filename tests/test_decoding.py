"""The CTC-only decoders (espnet_ext.decoding): the prefix beam search scores exactly what
ESPnet's search with ctc_weight 1.0 scores (CTC log-likelihood of the labels + lm_weight x
LM log-probability with <eos> + penalty per label), finds the exact best sequence with a
wide beam (and so never a worse one than ESPnet's search); greedy is the best path."""

import itertools
import subprocess
import sys

import pytest
import torch

from espnet_ext.decoding.ctc_search import CTCPrefixBeamSearch, ctc_greedy

V, EOS = 6, 5  # <blank>=0, labels 1..4, <sos/eos>=5


def ctc_ll(logp, labels):
    if not labels:
        return float(logp[:, 0].sum())
    return -float(
        torch.nn.functional.ctc_loss(
            logp.unsqueeze(1),
            torch.tensor([labels]),
            torch.tensor([logp.size(0)]),
            torch.tensor([len(labels)]),
            reduction="sum",
        )
    )


@pytest.fixture(scope="module")
def lm():
    from espnet2.lm.seq_rnn_lm import SequentialRNNLM

    torch.manual_seed(0)
    m = SequentialRNNLM(vocab_size=V, unit=16, nlayers=1, rnn_type="lstm")
    for p in m.parameters():  # a peaky LM, so that it changes the best sequence
        p.data.mul_(4)
    return m.eval()


def lm_ll(lm, labels):
    ys = torch.tensor([[EOS, *labels]])
    with torch.no_grad():
        logits, _ = lm(ys, None)
    logp = logits.log_softmax(-1)[0]
    return float(sum(logp[i, t] for i, t in enumerate([*labels, EOS])))


def posteriors(T, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, V, generator=g) * 2.5
    x[:, 0] += 1.0
    x[:, EOS] = -30  # CTC heads never emit <sos/eos>
    return x.log_softmax(-1)


@pytest.mark.parametrize("seed", range(4))
def test_wide_beam_finds_the_exact_best_sequence(seed, lm):
    T, w, pen = 6, 0.7, 0.3
    logp = posteriors(T, seed)
    best = {}
    for use_lm in (False, True):
        cands = []
        for L in range(T + 1):
            for seq in itertools.product(range(1, EOS), repeat=L):
                c = ctc_ll(logp, list(seq))
                if c > -1e9:
                    total = c + pen * L + (w * lm_ll(lm, list(seq)) if use_lm else 0.0)
                    cands.append((total, list(seq), c))
        best[use_lm] = max(cands)
        search = CTCPrefixBeamSearch(10_000, 0, EOS, lm=lm if use_lm else None, lm_weight=w, penalty=pen)
        got = search(logp)[0]
        assert got["labels"] == best[use_lm][1]
        assert got["score"] == pytest.approx(best[use_lm][0], abs=1e-4)
        assert got["ctc"] == pytest.approx(best[use_lm][2], abs=1e-4)
        if use_lm:
            assert got["lm"] == pytest.approx(lm_ll(lm, got["labels"]), abs=1e-4)
    assert best[False][1] != best[True][1] or seed  # the LM matters for at least one seed


def test_scores_are_exact_at_a_finite_beam(lm):
    logp = posteriors(60, 7)
    for h in CTCPrefixBeamSearch(6, 0, EOS, lm=lm, lm_weight=0.5)(logp, nbest=3):
        assert h["ctc"] == pytest.approx(ctc_ll(logp, h["labels"]), abs=1e-3)
        assert h["lm"] == pytest.approx(lm_ll(lm, h["labels"]), abs=1e-3)
        assert h["score"] == pytest.approx(h["ctc"] + 0.5 * h["lm"], abs=1e-3)


class _PassCTC(torch.nn.Module):
    """A CTC 'head' whose input already is the posteriors (for ESPnet's CTCPrefixScorer)."""

    def log_softmax(self, x):
        return x.log_softmax(-1)


@pytest.mark.parametrize("seed", range(3))
def test_same_objective_as_espnet_search_at_ctc_weight_1(seed, lm):
    from espnet2.legacy.nets.batch_beam_search import BatchBeamSearch
    from espnet2.legacy.nets.scorers.ctc import CTCPrefixScorer

    logp = posteriors(40, 100 + seed)
    w, beam = 0.8, 4  # ESPnet needs beam <= vocab at the first step
    bs = BatchBeamSearch(
        scorers=dict(ctc=CTCPrefixScorer(_PassCTC(), EOS), lm=lm),
        weights=dict(decoder=0.0, ctc=1.0, lm=w),
        beam_size=beam,
        vocab_size=V,
        sos=EOS,
        eos=EOS,
        token_list=[str(i) for i in range(V)],
        pre_beam_score_key=None,
    )
    ref = bs(x=logp, maxlenratio=0.0, minlenratio=0.0)[0]
    ref_labels = ref.yseq[1:-1].tolist()
    # ESPnet's hypothesis scores are the same objective: its CTC part is the exact likelihood
    assert float(ref.scores["ctc"]) == pytest.approx(ctc_ll(logp, ref_labels), abs=1e-3)
    assert float(ref.scores["lm"]) == pytest.approx(lm_ll(lm, ref_labels), abs=1e-3)
    # ... and its total is the objective here: ctc + lm_weight x lm
    assert float(ref.score) == pytest.approx(ctc_ll(logp, ref_labels) + w * lm_ll(lm, ref_labels), abs=1e-3)
    # The searches prune differently (per label count vs per frame), so at a small beam on
    # these flat random posteriors they need not agree; a wide beam here is the exact optimum,
    # which no search can beat.
    wide = CTCPrefixBeamSearch(64, 0, EOS, lm=lm, lm_weight=w)(logp)[0]
    assert wide["score"] >= float(ref.score) - 1e-3
    same = CTCPrefixBeamSearch(beam, 0, EOS, lm=lm, lm_weight=w)(logp)[0]
    assert same["score"] <= wide["score"] + 1e-4


def test_greedy_is_the_best_path():
    logp = torch.log_softmax(
        torch.tensor(
            [
                [5, 0, 0, 0],
                [0, 5, 0, 0],
                [0, 5, 0, 0],
                [5, 0, 0, 0],
                [0, 5, 0, 0],
                [0, 0, 5, 0],
                [0, 0, 0, 5.0],
            ]
        ),
        -1,
    )
    assert ctc_greedy(logp, drop=(3,)) == [[1, 1, 2]]
    batch = torch.stack([logp, logp.flip(0)])
    assert ctc_greedy(batch, torch.tensor([7, 3]), drop=(3,)) == [[1, 1, 2], [2, 1]]


def test_lstm_cell_steps_match_the_lm():
    from espnet2.lm.seq_rnn_lm import SequentialRNNLM

    from espnet_ext.decoding.ctc_search import _LMAdapter, _LSTMLMAdapter

    torch.manual_seed(1)
    lm = SequentialRNNLM(vocab_size=V, unit=12, nlayers=2, rnn_type="lstm").eval()
    assert _LSTMLMAdapter.supports(lm)
    fast, ref = _LSTMLMAdapter(lm, EOS), _LMAdapter(lm, EOS)
    prefixes = [(), (1,), (1, 2), (3,)]
    with torch.no_grad():
        lf, sf = fast.init()
        lr, sr = ref.init()
        assert torch.allclose(lf, lr, atol=1e-5)
        # extend each prefix from the state of its parent (the empty prefix for all here)
        lf, sf = fast.step([(2,), (4,)], [sf, sf])
        lr, sr = ref.step([(2,), (4,)], [sr, sr])
        assert torch.allclose(lf, lr, atol=1e-5)
        lf2, _ = fast.step([(2, 1), (4, 3)], sf)
        lr2, _ = ref.step([(2, 1), (4, 3)], sr)
        assert torch.allclose(lf2, lr2, atol=1e-5)
    del prefixes


def test_fast_lstm_scorer_is_espnets_lm_scorer():
    from espnet2.lm.seq_rnn_lm import SequentialRNNLM

    from espnet_ext.decoding.lm import FastLSTMLMScorer

    torch.manual_seed(2)
    lm = SequentialRNNLM(vocab_size=V, unit=12, nlayers=1, rnn_type="lstm").eval()
    fast = FastLSTMLMScorer(lm, EOS)
    ys = torch.tensor([[EOS], [EOS]])
    with torch.no_grad():
        a, sa = lm.batch_score(ys, [None, None], None)
        b, sb = fast.batch_score(ys, [None, None], None)
        assert torch.allclose(a, b, atol=1e-5)
        ys = torch.tensor([[EOS, 1], [EOS, 3]])
        a, _ = lm.batch_score(ys, sa, None)
        b, _ = fast.batch_score(ys, sb, None)
        assert torch.allclose(a, b, atol=1e-5)


def test_decoder_rescoring_scores_the_beam_with_the_attention_decoder(tmp_path):
    """``decoder_rescore_weight`` λ: the CTC prefix search's final beam is rescored by the
    attention decoder in one batched teacher-forced pass. Each hypothesis's ``att`` equals the
    decoder's own step-by-step score (ESPnet's ``TransformerDecoder.score``), its total is
    ``(1 - λ) ctc + λ att + penalty len``, the n-best is ranked by it, and λ = 0 is the plain
    prefix search."""
    import _tiny_asr
    import soundfile

    from espnet_ext.decoding.speech2text import FastSpeech2Text

    exp = _tiny_asr.build(tmp_path)
    wav = _tiny_asr.write_wav(tmp_path / "a.wav", seconds=2.0)
    speech, _ = soundfile.read(wav, dtype="float32")
    common = dict(
        asr_train_config=str(exp / "config.yaml"),
        asr_model_file=str(exp / "valid.acc.ave.pth"),
        device="cpu",
        beam_size=4,
        ctc_weight=1.0,
        nbest=4,
        penalty=0.5,
    )
    with pytest.raises(ValueError, match="decoder_rescore_weight"):
        FastSpeech2Text(decoder_rescore_weight=1.5, **common)
    plain = FastSpeech2Text(**common)
    off = FastSpeech2Text(decoder_rescore_weight=0.0, **common)
    lam = 0.5
    rescored = FastSpeech2Text(decoder_rescore_weight=lam, **common)
    assert plain.ctc_mode == rescored.ctc_mode == "prefix"
    base = plain(speech)
    assert [r[2] for r in off(speech)] == [r[2] for r in base]
    results = rescored(speech)
    assert len(results) == 4

    model = rescored.asr_model
    x = torch.as_tensor(speech).unsqueeze(0)
    enc, _ = rescored._encode(x, torch.tensor([x.size(1)]))
    scores = []
    for _text, _tokens, ids, hyp in results:
        labels = hyp.yseq[1:-1].tolist()
        assert ids == labels
        att = 0.0
        with torch.no_grad():
            for i, target in enumerate([*labels, model.eos]):
                prefix = torch.tensor([model.sos, *labels[:i]])
                logp, _ = model.decoder.score(prefix, None, enc[0])
                att += float(logp[target])
        assert hyp.scores["att"] == pytest.approx(att, abs=1e-4)
        total = (1 - lam) * hyp.scores["ctc"] + lam * att + 0.5 * len(labels)
        assert float(hyp.score) == pytest.approx(total, abs=1e-4)
        scores.append(float(hyp.score))
    assert scores == sorted(scores, reverse=True)
    # the same beam as the plain search, re-ranked
    assert sorted(r[2] for r in results) == sorted(r[2] for r in base)


def test_ctc_inference_takes_the_rescoring_weight(tmp_path):
    """``python -m espnet_ext.bin.ctc_inference --decoder_rescore_weight`` (also from a YAML
    ``--config``, as stage 6 passes decoding configs) decodes in ESPnet's output layout."""
    import _tiny_asr

    exp = _tiny_asr.build(tmp_path)
    wav = _tiny_asr.write_wav(tmp_path / "a.wav", seconds=1.5)
    (tmp_path / "wav.scp").write_text(f"utt1 {wav}\n")
    (tmp_path / "decode.yaml").write_text(
        "beam_size: 3\nctc_weight: 1.0\npenalty: 0.5\ndecoder_rescore_weight: 0.5\nnbest: 1\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "espnet_ext.bin.ctc_inference", "--config", str(tmp_path / "decode.yaml"),
         "--asr_train_config", str(exp / "config.yaml"), "--asr_model_file", str(exp / "valid.acc.ave.pth"),
         "--ngpu", "0", "--data_path_and_name_and_type", f"{tmp_path / 'wav.scp'},speech,sound",
         "--output_dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "out" / "1best_recog" / "text").read_text().startswith("utt1")
