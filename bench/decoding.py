"""Decoding speed and accuracy of the decoding modes, on one model and one test set, in one run.

    python bench/decoding.py --exp_root egs2/librispeech_ssl/asr1        # a finished recipe run
    python bench/decoding.py --exp_root /tmp/run --max_utts 40 --modes joint,ctc_greedy,ctc_lm

Modes (each a decoding config; paths as options):

* ``joint``: today's default, conf/decode_asr_embedded.yaml: ESPnet's joint CTC/attention
  beam search (beam 20, ctc_weight 0.5) + the LM (lm_weight 1.6).
* ``joint_nolm``: the same search without the LM.
* ``joint_fastlm``: the joint search + LM with the LSTM LM stepped by ``lstm_cell``
  (espnet_ext.decoding.lm: the same scores, less CPU per step).
* ``ctc_greedy``: conf/decode_asr_embedded_ctc_greedy.yaml (ctc_weight 1.0, beam 1, no LM):
  best path over the CTC posteriors.
* ``ctc_lm``: conf/decode_asr_embedded_ctc_lm.yaml (ctc_weight 1.0 + the LM, a beam): the
  time-synchronous CTC prefix beam search of espnet_ext.decoding.
* ``ctc_rescore``: conf/decode_asr_embedded_ctc_rescore.yaml: the ctc_lm search, its final
  beam rescored by the attention decoder (``decoder_rescore_weight``, one batched decoder pass).
* ``ctc_lm_espnet``: the ctc_lm config through ESPnet's own search (label-synchronous CTC
  prefix scoring + LM), for comparison (slow; not in the default modes).

Every mode is decoded by :class:`espnet_ext.decoding.speech2text.FastSpeech2Text` (ESPnet's
``Speech2Text``; ``joint``, ``joint_nolm`` and ``ctc_lm_espnet`` are exactly ESPnet's search), one utterance at a time (``--batch_size``), on ``--threads`` threads (1 by
default). RTF per core = CPU seconds this process spends decoding (encoder + search;
``time.process_time``, which sums over threads, so it is per core at any ``--threads``; model
loading and one warm-up utterance excluded) / seconds of audio. Audio seconds:
``utt2num_samples`` of the data dir if there is one, else the feature frames x the frontend's hop. WER/CER: ``espnet_ext.bin.score``.

The last line is ``rtf_joint=A rtf_ctc_greedy=B wer_joint=C wer_ctc_greedy=D`` followed by
the other modes' ``rtf_<mode>=`` and ``wer_<mode>=``.
"""

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONF = ROOT / "conf"
DEFAULT_CONFIGS = {
    "joint": CONF / "decode_asr_embedded.yaml",
    "joint_nolm": CONF / "decode_asr_embedded.yaml",
    "joint_fastlm": CONF / "decode_asr_embedded.yaml",
    "ctc_greedy": CONF / "decode_asr_embedded_ctc_greedy.yaml",
    "ctc_lm": CONF / "decode_asr_embedded_ctc_lm.yaml",
    "ctc_lm_espnet": CONF / "decode_asr_embedded_ctc_lm.yaml",
    "ctc_rescore": CONF / "decode_asr_embedded_ctc_rescore.yaml",
}
USES_LM = {"joint", "joint_fastlm", "ctc_lm", "ctc_lm_espnet", "ctc_rescore"}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--exp_root",
        type=Path,
        default=Path("."),
        help="recipe directory of a finished run (exp/, dump/ below it)",
    )
    p.add_argument(
        "--asr_exp",
        type=Path,
        default=None,
        help="default: <exp_root>/exp/asr_finetune_conformer_transformer_embedded_pretrained",
    )
    p.add_argument("--asr_model", default="valid.acc.ave.pth", help="file name in --asr_exp, or a path")
    p.add_argument(
        "--lm_exp", type=Path, default=None, help="default: <exp_root>/exp/lm_train_lm_embedded_bpe40"
    )
    p.add_argument("--lm_model", default="valid.loss.best.pth")
    p.add_argument("--test_set", default="test_clean")
    p.add_argument(
        "--data_dir",
        type=Path,
        default=None,
        help="dump dir of the set (feats.scp, text): default <exp_root>/dump/<test_set>",
    )
    p.add_argument(
        "--audio_dir",
        type=Path,
        default=None,
        help="data dir with utt2num_samples (default <exp_root>/data/<test_set>, if present)",
    )
    p.add_argument("--modes", default="joint,joint_nolm,ctc_greedy,ctc_lm,ctc_rescore")
    for mode, path in DEFAULT_CONFIGS.items():
        p.add_argument(f"--{mode}_config", type=Path, default=path)
    p.add_argument("--max_utts", type=int, default=None, help="the first N utterances (key order)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--out_dir", type=Path, default=None, help="hypotheses and scores (default: a temp dir)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p


def _rows(path: Path) -> Dict[str, str]:
    from espnet_ext.utils.kaldi_table import iter_rows

    return {r.key: r.value for r in iter_rows(path)}


def load_utterances(data_dir: Path, root: Path, max_utts: Optional[int]):
    import kaldiio

    feats = _rows(data_dir / "feats.scp")
    keys = sorted(feats)[:max_utts] if max_utts else sorted(feats)
    out = []
    for k in keys:
        path = feats[k]
        if not Path(path.split(":")[0]).is_absolute():
            path = str(root / path)
        out.append((k, torch.tensor(kaldiio.load_mat(path), dtype=torch.float32)))
    return out


def audio_seconds(keys: List[str], utts, audio_dir: Optional[Path], asr_config: Path) -> Dict[str, float]:
    if audio_dir is not None and (audio_dir / "utt2num_samples").is_file():
        n = _rows(audio_dir / "utt2num_samples")
        cfg = yaml.safe_load(asr_config.read_text())
        fs = (cfg.get("frontend_conf") or {}).get("fs", 16000)
        if all(k in n for k in keys):
            return {k: int(n[k]) / fs for k in keys}
    cfg = yaml.safe_load(asr_config.read_text())
    fc = cfg.get("frontend_conf") or {}
    hop = fc.get("hop_length", 160) / fc.get("fs", 16000)
    return {k: x.size(0) * hop for k, x in utts}


def build(
    mode: str,
    config: Path,
    asr_config: Path,
    asr_model: Path,
    lm_config: Optional[Path],
    lm_model: Optional[Path],
):
    from espnet_ext.decoding.speech2text import FastSpeech2Text

    conf = yaml.safe_load(config.read_text()) or {}
    kwargs = dict(asr_train_config=str(asr_config), asr_model_file=str(asr_model), device="cpu", **conf)
    if mode in USES_LM:
        kwargs.update(lm_train_config=str(lm_config), lm_file=str(lm_model))
    # "joint" and "ctc_lm_espnet" are ESPnet's searches exactly as ESPnet runs them
    s2t = FastSpeech2Text(fast_lm=mode not in ("joint", "joint_nolm", "ctc_lm_espnet"), **kwargs)
    if mode == "ctc_lm_espnet":
        s2t.ctc_mode = None  # ESPnet's own search for the same configuration
    return s2t, conf


def decode(s2t, utts, batch_size: int):
    """Hypothesis text per key and the CPU seconds spent."""
    hyps, cpu = {}, 0.0
    for i in range(0, len(utts), batch_size):
        chunk = utts[i : i + batch_size]
        t0 = time.process_time()
        if batch_size == 1:
            results = [s2t(chunk[0][1])]
        else:
            results = s2t.batch_decode([x for _, x in chunk])
        cpu += time.process_time() - t0
        for (k, _), res in zip(chunk, results):
            hyps[k] = res[0][0] or ""
    return hyps, cpu


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s (bench.decoding) %(message)s")
    import espnet_ext  # noqa: F401  (registers the plugins)
    from espnet_ext.bin.score import score

    torch.set_num_threads(args.threads)
    root = args.exp_root.resolve()
    asr_exp = args.asr_exp or root / "exp" / "asr_finetune_conformer_transformer_embedded_pretrained"
    asr_model = Path(args.asr_model) if os.sep in args.asr_model else asr_exp / args.asr_model
    asr_config = asr_exp / "config.yaml"
    lm_exp = args.lm_exp or root / "exp" / "lm_train_lm_embedded_bpe40"
    lm_model = Path(args.lm_model) if os.sep in args.lm_model else lm_exp / args.lm_model
    data_dir = args.data_dir or root / "dump" / args.test_set
    audio_dir = args.audio_dir or root / "data" / args.test_set
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in DEFAULT_CONFIGS:
            raise SystemExit(f"unknown mode {m!r}: one of {sorted(DEFAULT_CONFIGS)}")
    for f in [asr_model, asr_config, data_dir / "feats.scp", data_dir / "text"] + (
        [lm_model, lm_exp / "config.yaml"] if USES_LM & set(modes) else []
    ):
        if not f.is_file():
            raise SystemExit(f"{f}: no such file")

    utts = load_utterances(data_dir, root, args.max_utts)
    keys = [k for k, _ in utts]
    secs = audio_seconds(keys, utts, audio_dir, asr_config)
    total_audio = sum(secs.values())
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="bench_decoding."))
    refs = _rows(data_dir / "text")
    ref_path = out_dir / "ref.txt"
    out_dir.mkdir(parents=True, exist_ok=True)
    ref_path.write_text("".join(f"{k} {refs[k]}\n" for k in keys))

    results = {}
    for mode in modes:
        config = getattr(args, f"{mode}_config")
        s2t, conf = build(mode, config, asr_config, asr_model, lm_exp / "config.yaml", lm_model)
        with torch.no_grad():
            s2t(utts[0][1])  # warm-up (first-call allocations), not timed
            hyps, cpu = decode(s2t, utts, args.batch_size)
        hyp_path = out_dir / mode / "text"
        hyp_path.parent.mkdir(parents=True, exist_ok=True)
        hyp_path.write_text("".join(f"{k} {hyps[k]}\n" for k in keys))
        sc = score(ref_path, hyp_path, out_dir / mode / "score")
        results[mode] = dict(
            rtf=cpu / total_audio,
            cpu_seconds=cpu,
            wer=sc["wer"],
            cer=sc["cer"],
            config=str(config),
            beam=conf.get("beam_size"),
            ctc_weight=conf.get("ctc_weight"),
            lm_weight=conf.get("lm_weight") if mode in USES_LM else 0.0,
            search=("espnet" if s2t.ctc_mode is None else s2t.ctc_mode),
        )
        del s2t

    print(
        f"model: {asr_model} (+ LM {lm_model}); set: {data_dir} ({len(utts)} utterances, "
        f"{total_audio:.1f} s of audio); {args.threads} thread(s), batch size {args.batch_size}; "
        f"RTF per core = process CPU seconds / audio seconds"
    )
    print(
        f"{'mode':<15} {'search':<8} {'beam':>4} {'ctcw':>5} {'lmw':>5} {'RTF/core':>9} {'CPU s':>8} "
        f"{'WER':>6} {'CER':>6} {'speed-up':>8} {'dWER':>6}"
    )
    ref_mode = "joint" if "joint" in results else modes[0]
    for mode, r in results.items():
        speed = results[ref_mode]["rtf"] / r["rtf"] if r["rtf"] > 0 else float("inf")
        print(
            f"{mode:<15} {r['search']:<8} {r['beam']!s:>4} {r['ctc_weight']!s:>5} {r['lm_weight']!s:>5} "
            f"{r['rtf']:>9.4f} {r['cpu_seconds']:>8.1f} {r['wer']:>6.2f} {r['cer']:>6.2f} "
            f"{speed:>7.1f}x {r['wer'] - results[ref_mode]['wer']:>+6.2f}"
        )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                dict(
                    results=results,
                    n_utts=len(utts),
                    audio_seconds=total_audio,
                    model=str(asr_model),
                    lm=str(lm_model),
                    data=str(data_dir),
                ),
                indent=1,
            )
            + "\n"
        )
    first = ["joint", "ctc_greedy"]
    pairs = [f"rtf_{m}={results[m]['rtf']:.4f}" for m in first if m in results]
    pairs += [f"wer_{m}={results[m]['wer']:.2f}" for m in first if m in results]
    for m in results:
        if m not in first:
            pairs += [f"rtf_{m}={results[m]['rtf']:.4f}", f"wer_{m}={results[m]['wer']:.2f}"]
    print(" ".join(pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
