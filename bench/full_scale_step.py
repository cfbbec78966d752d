#!/usr/bin/env python3
"""A real step of the full-scale models, and what a run of their schedule costs.

1. Builds the exact models of ``conf/pretrain_conformer_bestrq.yaml`` and
   ``conf/finetune_conformer_transformer.yaml`` on the CPU (real tensors), and runs 2
   optimizer updates of each through the project's task and trainer
   (``espnet_ext.bin.ssl_train`` / ``asr_train``, ``--ngpu 0 --use_amp true``: CPU bf16
   autocast), on a tiny generated set written by the recipe's own stage 2
   (``espnet_ext.bin.extract_feats``: feature shards for the sharded iterator, feats.scp,
   feats_shape, text). Overridden on the command line, nothing else: ``--batch_size``,
   ``--accum_grad``, ``--num_workers`` (and for pre-training the sharded iterator's
   ``--shard_streams_per_rank``, which the config ties to ``num_workers``), ``--max_epoch``,
   ``--num_iters_per_epoch``.
   The fine-tuning token list has 5,000 entries (the recipe's ``--nbpe 5000``; the text is
   tokenized by characters, which changes no shape).
2. Checks that the losses the trainer logged are finite and that the parameters changed:
   the saved ``1epoch.pth`` against the initial model rebuilt with the same seed (ESPnet
   seeds before building), which also shows that the change is update-sized.
3. Counts the FLOPs of one training forward + backward of the real model on ONE utterance of
   15 s (1,500 frames; 50 tokens for fine-tuning) with ``FlopCounterMode``, and multiplies
   by 2,048: the config's update is 2,048 utterances, and counting a whole 15 s utterance
   keeps attention's quadratic term at its real length (no extrapolation). The count is
   corrected for torch's over-count of depthwise-conv weight gradients
   (:func:`espnet_ext.distributed.cost.count_training_flops`; the raw count is printed too)
   and compared with the analytic formula the dry run uses
   (:func:`espnet_ext.distributed.cost.flops_per_utterance`).
4. Projects the wall-clock time of the config's whole schedule (``scheduler_conf.total_steps``
   updates) on 128 A100s at 312 bf16 TFLOP/s each, at 30/40/50% MFU.

Memory: one model at a time (fp32 parameters + gradients + AdamW states: ~16 bytes per
parameter, ~10 GB); each training runs in its own process. Needs ~14 GB free and ~20 GB of
disk for the checkpoints (removed at the end unless --keep).

Run:  OMP_NUM_THREADS=2 .venv/bin/python bench/full_scale_step.py      (~15-30 min on 2 cores)
Last line: ``full_scale_step pretrain_params=N finetune_params=N losses_finite=1
params_changed=1 pretrain_flops_per_update=F finetune_flops_per_update=F
pretrain_days_at_40pct=D finetune_days_at_40pct=D``.
"""

import argparse
import gc
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from espnet_ext.distributed import cost  # noqa: E402

CONFIGS = {
    "pretrain": REPO / "conf/pretrain_conformer_bestrq.yaml",
    "finetune": REPO / "conf/finetune_conformer_transformer.yaml",
}
GPUS = 128
UTTS_PER_UPDATE = 2048
UTT_SECONDS = 15.0
FLOP_TOKENS = 50  # transcript tokens of a 15 s utterance (cost.TOKENS_PER_SECOND x 15, rounded)
VOCAB = 5000
_TEXT = "the quick brown fox jumps over the lazy dog while seven wizards quietly hex jolly kings"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def mem_available_gb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def write_data(root: Path, seconds) -> Path:
    """A Kaldi data dir of len(seconds) 16 kHz utterances, through the recipe's stage 2."""
    import numpy as np
    import soundfile as sf

    data, dump = root / "data/train", root / "dump/train"
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    words = _TEXT.split()
    wav, text, u2s = [], [], []
    for i, sec in enumerate(seconds):
        utt = f"spk1-utt{i:02d}"
        n = int(sec * 16000)
        t = np.arange(n) / 16000
        x = 0.1 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.02 * rng.standard_normal(n)
        path = data / f"{utt}.wav"
        sf.write(path, x.astype(np.float32), 16000, subtype="PCM_16")
        wav.append(f"{utt} {path}")
        text.append(f"{utt} {' '.join(words[: 4 + 3 * i])}")
        u2s.append(f"{utt} spk1")
    (data / "wav.scp").write_text("\n".join(wav) + "\n")
    (data / "text").write_text("\n".join(text) + "\n")
    (data / "utt2spk").write_text("\n".join(u2s) + "\n")
    (data / "spk2utt").write_text("spk1 " + " ".join(u.split()[0] for u in u2s) + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_ext.bin.extract_feats",
            "--data_dir",
            str(data),
            "--out_dir",
            str(dump),
            "--nj",
            "1",
        ],
        check=True,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    (root / "ssl_tokens.txt").write_text("<blank>\n<unk>\n<sos/eos>\n")
    chars = ["<space>", *sorted(set(_TEXT) - {" "})]
    filler = [f"<bpe{i}>" for i in range(VOCAB - 3 - len(chars))]
    (root / "tokens.txt").write_text("\n".join(["<blank>", "<unk>", *chars, *filler, "<sos/eos>"]) + "\n")
    return dump


def train_command(stage: str, root: Path, dump: Path, out: Path):
    sets = []
    for split in ("train", "valid"):
        sets += [f"--{split}_data_path_and_name_and_type", f"{dump}/feats.scp,speech,kaldi_ark"]
        if stage == "finetune":
            sets += [f"--{split}_data_path_and_name_and_type", f"{dump}/text,text,text"]
        sets += [f"--{split}_shape_file", f"{dump}/feats_shape"]
    if stage == "pretrain":
        # the sharded iterator's streams per rank are its workers (the config sets 4 = num_workers)
        module, tokens = (
            "espnet_ext.bin.ssl_train",
            ["--token_list", str(root / "ssl_tokens.txt"), "--shard_streams_per_rank", "1"],
        )
    else:
        module, tokens = (
            "espnet_ext.bin.asr_train",
            ["--token_type", "char", "--token_list", str(root / "tokens.txt")],
        )
    return [
        sys.executable, "-m", module, "--config", str(CONFIGS[stage]), *tokens, *sets,
        "--output_dir", str(out), "--ngpu", "0", "--use_amp", "true",
        # the only overrides: 2 utterances per update, 2 updates, no loader process
        "--batch_size", "2", "--accum_grad", "1", "--num_workers", "0",
        "--max_epoch", "1", "--num_iters_per_epoch", "2",
    ]  # fmt: skip


def run_training(cmd, out: Path):
    """Run one training process; its log, wall time and peak RSS (GB)."""
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    t0 = time.time()
    with open(out / "bench.log", "w") as logf:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=logf, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = (out / "bench.log").read_text(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"training failed ({proc.returncode}); log {out / 'bench.log'}:\n{text[-5000:]}")
    return text, time.time() - t0, usage.ru_maxrss / 2**20


def epoch_losses(text: str):
    """The losses of the trainer's epoch summary ("1epoch results: [train] ... loss=...")."""
    found = {}
    for split in ("train", "valid"):
        m = re.search(rf"1epoch results: .*?\[{split}\][^\[]*?\bloss=([^\s,]+)", text)
        if m:
            found[split] = float(m.group(1))
    return found


def build_initial(stage: str, cmd):
    """The model the trainer started from: ESPnet seeds (--seed, 0) and then builds."""
    from espnet2.torch_utils.set_all_random_seed import set_all_random_seed

    import espnet_ext  # noqa: F401
    from espnet_ext.tasks.asr import ASRTask
    from espnet_ext.tasks.ssl import SSLTask

    task = SSLTask if stage == "pretrain" else ASRTask
    args = task.get_parser().parse_args(cmd[3:])
    set_all_random_seed(args.seed)
    return task.build_model(args), args


def compare(model, path: Path):
    import torch

    trained = torch.load(path, map_location="cpu", weights_only=True)
    changed = total = 0
    max_delta = 0.0
    unchanged = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        total += 1
        d = float((trained[name] - p.detach()).abs().max())
        max_delta = max(max_delta, d)
        changed += d > 0
        if d == 0:
            unchanged.append(f"{name} (values {float(p.min()):g}..{float(p.max()):g})")
    if unchanged:
        # Update 2's lr is 3e-8; a step under half an ulp of fp32 (3e-8 at 1.0) rounds away,
        # so tensors of ones (LayerNorm weights) can stay bit-identical.
        log(f"unchanged parameter tensors: {', '.join(unchanged)}")
    same_buffers = all(
        bool((trained[n] == b).all())
        for n, b in model.named_buffers()
        if n in trained and b.is_floating_point()
    )
    return changed, total, max_delta, same_buffers


def count_flops(stage: str, model, frames: int, tokens: int):
    import torch

    model.train()  # dropout and masking as in training; FLOPs do not depend on dtype (fp32 here)
    torch.manual_seed(0)
    batch = {"speech": torch.randn(1, frames, 80), "speech_lengths": torch.tensor([frames])}
    if stage == "finetune":
        batch.update(text=torch.randint(2, 40, (1, tokens)), text_lengths=torch.tensor([tokens]))

    def step():
        model.zero_grad(set_to_none=True)
        model(**batch)[0].backward()

    t0 = time.time()
    counts = cost.count_training_flops(step)
    model.zero_grad(set_to_none=True)
    counts["seconds"] = time.time() - t0
    return counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default=None, help="default: a temporary directory")
    p.add_argument("--seconds", default="2.5,3.0", help="lengths of the training utterances")
    p.add_argument("--min_free_gb", type=float, default=14.0)
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument(
        "--stages",
        default="pretrain,finetune",
        help="run only some (the last line then has only their fields)",
    )
    args = p.parse_args()

    import torch
    import yaml

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    free = mem_available_gb()
    log(f"memory available: {free:.1f} GB; threads: {torch.get_num_threads()}")
    if free < args.min_free_gb:
        sys.exit(f"need ~{args.min_free_gb:g} GB free for one 0.6B model with AdamW, have {free:.1f} GB")
    root = Path(args.workdir or tempfile.mkdtemp(prefix="full_scale_step."))
    root.mkdir(parents=True, exist_ok=True)
    seconds = [float(s) for s in args.seconds.split(",")]
    dump = write_data(root, seconds)
    log(f"data: {len(seconds)} utterances of {', '.join(f'{s:g}' for s in seconds)} s -> {dump}")

    results, all_finite, all_changed = {}, True, True
    for stage in args.stages.split(","):
        conf = yaml.safe_load(CONFIGS[stage].read_text())
        out = root / f"exp_{stage}"
        cmd = train_command(stage, root, dump, out)
        log(
            f"{stage}: 2 updates of {CONFIGS[stage].relative_to(REPO)} through {cmd[2]} "
            f"(--ngpu 0 --use_amp true: CPU bf16 autocast)"
        )
        text, wall, rss = run_training(cmd, out)
        losses = epoch_losses(text)
        bf16 = "CPU bf16 autocast" in text
        finite = len(losses) == 2 and all(math.isfinite(v) for v in losses.values())
        skipped = re.findall(r"update skipped \(NaN/inf[^\n]*", text)
        log(
            f"{stage}: trained in {wall:.0f} s, peak RSS {rss:.1f} GB; losses {losses}; "
            f"bf16 autocast logged: {bf16}; updates skipped (NaN/inf): {len(skipped)}"
        )

        model, targs = build_initial(stage, cmd)
        params = sum(p.numel() for p in model.parameters())
        changed, total, max_delta, same_buffers = compare(model, out / "1epoch.pth")
        # all but tensors whose steps round away in fp32 (listed above), update-sized
        ok_changed = changed >= 0.99 * total and same_buffers and 0 < max_delta < 1e-3
        log(
            f"{stage}: {params:,} parameters; {changed}/{total} parameter tensors changed, max |delta| "
            f"{max_delta:.2e} (lr {conf['optim_conf']['lr']:g} warmed up over "
            f"{conf['scheduler_conf']['warmup_steps']:,} updates: lr 0 for update 1, "
            f"{conf['optim_conf']['lr'] / conf['scheduler_conf']['warmup_steps']:.1e} for update 2); "
            f"frozen buffers unchanged: {same_buffers}"
        )

        frames, tokens = int(UTT_SECONDS * cost.FRAMES_PER_SECOND), FLOP_TOKENS
        counts = count_flops(stage, model, frames, tokens)
        shape = cost.model_shape(conf, "ssl" if stage == "pretrain" else "asr", vocab_size=VOCAB)
        formula = cost.flops_per_utterance(shape, UTT_SECONDS, tokens=tokens)
        log(
            f"{stage}: FlopCounterMode, 1 utterance of {UTT_SECONDS:g} s ({frames} frames"
            + (f", {tokens} tokens" if stage == "finetune" else "")
            + f"), forward + backward in {counts['seconds']:.0f} s: {cost.fmt_flops(counts['flops'])} FLOPs "
            f"(torch's raw count {cost.fmt_flops(counts['raw'])}: depthwise weight gradients x groups); "
            f"formula {cost.fmt_flops(formula)} ({100 * (formula / counts['flops'] - 1):+.1f}%)"
        )
        del model
        gc.collect()

        total_steps = int(conf["scheduler_conf"]["total_steps"])
        proj = cost.project_cost(
            shape,
            total_steps=total_steps,
            utts_per_update=UTTS_PER_UPDATE,
            utt_seconds=UTT_SECONDS,
            gpus=GPUS,
            flops_per_update=UTTS_PER_UPDATE * counts["flops"],
        )
        days = proj.days_by_mfu()
        log(
            f"{stage}: {cost.fmt_flops(proj.flops_per_update)} FLOPs per update ({UTTS_PER_UPDATE} x "
            f"{UTT_SECONDS:g} s); {total_steps:,} updates = {cost.fmt_flops(proj.total_flops)} FLOPs; on "
            f"{GPUS} A100 x {cost.A100_BF16_PEAK_FLOPS / 1e12:g} TFLOP/s: "
            + ", ".join(
                f"{d:.2f} days ({proj.seconds_per_update(m):.2f} s/update) at {m:.0%} MFU"
                for m, d in days.items()
            )
        )
        results[stage] = dict(params=params, flops=proj.flops_per_update, days40=days[0.4])
        all_finite &= finite and not skipped
        all_changed &= ok_changed
        shutil.rmtree(out, ignore_errors=True)  # ~10 GB of checkpoints

    if set(results) != {"pretrain", "finetune"}:
        print(
            "full_scale_step "
            + " ".join(
                f"{k}_params={r['params']} {k}_flops_per_update={r['flops']:.3e} {k}_days_at_40pct={r['days40']:.2f}"
                for k, r in results.items()
            )
            + f" losses_finite={int(all_finite)} params_changed={int(all_changed)}"
        )
        return 0 if all_finite and all_changed else 1
    total40 = results["pretrain"]["days40"] + results["finetune"]["days40"]
    log(
        f"assumptions: every utterance 15 s (the update's 2048 x 15 s = 8.5 h of speech); model "
        f"FLOPs only (no attention recompute, no data loading, no communication stalls); peak "
        f"{cost.A100_BF16_PEAK_FLOPS / 1e12:g} TFLOP/s dense bf16 per A100. Both stages at 40% MFU: "
        f"{total40:.1f} days, against the seed's ~49 days (7 weeks) on the same 128 A100s, i.e. "
        f"the seed ran at ~{40 * total40 / 49:.1f}% MFU if its 7 weeks were these two schedules"
    )
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"full_scale_step pretrain_params={results['pretrain']['params']} "
        f"finetune_params={results['finetune']['params']} losses_finite={int(all_finite)} "
        f"params_changed={int(all_changed)} "
        f"pretrain_flops_per_update={results['pretrain']['flops']:.3e} "
        f"finetune_flops_per_update={results['finetune']['flops']:.3e} "
        f"pretrain_days_at_40pct={results['pretrain']['days40']:.2f} "
        f"finetune_days_at_40pct={results['finetune']['days40']:.2f}",
        flush=True,
    )
    return 0 if all_finite and all_changed else 1


if __name__ == "__main__":
    sys.exit(main())
