"""Benchmark: what waveform augmentation costs per utterance in the training process.

ESPnet's preprocessor as a fine-tuning config builds it (``ASRTask.build_preprocess_fn``,
``train=True``; the recipe's ``waveform_aug``), on the run's own training utterances from
the audio shards, one thread, for: every effect at the config's probabilities; none (the
tokenization and the rest of the preprocessor); and each effect alone at probability 1
(noise, room response, speed perturbation). With ``num_workers: 0``, as the CPU configs
train, this work is in the update's critical path; on GPUs it is in the loader workers.

Run in a recipe directory after stages 1-2 (the noise and RIR lists of stage 1, the
shards of stage 2):

    .venv/bin/python bench/augment.py --config conf/tuning/finetune_conformer_transformer_embedded_aug.yaml
"""

import argparse
import time

import kaldiio
import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="a fine-tuning config with augmentation")
    p.add_argument("--data", default="dump/train_clean", help="wav.scp and text of the utterances")
    p.add_argument("--noise_scp", default="data/musan_noise/wav.scp")
    p.add_argument("--rir_scp", default="data/rirs/wav.scp")
    p.add_argument("--token_dir", default="data/token_list/bpe_unigram40", help="stage 3's tokenizer")
    p.add_argument("--utts", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(1)
    from espnet2.tasks.asr import ASRTask

    import espnet_ext  # noqa: F401  (registers waveform_aug)

    parser = ASRTask.get_parser()
    args = parser.parse_args(
        ["--config", a.config, "--noise_scp", a.noise_scp, "--rir_scp", a.rir_scp, "--token_type", "bpe",
         "--bpemodel", f"{a.token_dir}/bpe.model", "--token_list", f"{a.token_dir}/tokens.txt"]
    )  # fmt: skip
    fn = ASRTask.build_preprocess_fn(args, train=True)
    texts = dict(line.rstrip("\n").split(maxsplit=1) for line in open(f"{a.data}/text"))
    utts = []
    for line in open(f"{a.data}/wav.scp"):
        utt, path = line.split(maxsplit=1)
        wav = kaldiio.load_mat(path.strip())
        utts.append((utt, np.asarray(wav[1] if isinstance(wav, tuple) else wav, dtype=np.float32)))
        if len(utts) == a.utts:
            break
    seconds = sum(len(w) for _, w in utts) / fn.fs

    def ms_per_utt() -> float:
        best = float("inf")
        for r in range(a.repeats):
            np.random.seed(r)
            t = time.perf_counter()
            for utt, wav in utts:
                fn(utt, {"speech": wav, "text": texts[utt]})
            best = min(best, time.perf_counter() - t)
        return 1000 * best / len(utts)

    probs = {k: getattr(fn, k) for k in ("noise_apply_prob", "rir_apply_prob", "data_aug_prob")}
    rows = {"config": ms_per_utt()}
    for k in probs:
        setattr(fn, k, 0.0)
    rows["none"] = ms_per_utt()
    for k, name in (("noise_apply_prob", "noise"), ("rir_apply_prob", "rir"), ("data_aug_prob", "speed")):
        setattr(fn, k, 1.0)
        rows[f"{name}_only_p1"] = ms_per_utt()
        setattr(fn, k, 0.0)
    print(f"{len(utts)} utterances ({seconds / len(utts):.2f} s each), probabilities {probs}")
    for name, ms in rows.items():
        print(f"  {name:>16}: {ms:6.2f} ms/utt  x{ms / rows['none']:.2f} of none")
    print(
        f"ms_per_utt_config={rows['config']:.2f} ms_per_utt_none={rows['none']:.2f} ratio={rows['config'] / rows['none']:.2f}"
    )


if __name__ == "__main__":
    main()
