"""Stage 10: a Hugging Face model repository for the fine-tuned model, and its upload.

    python -m espnet_ext.bin.model_card --packed_model exp/asr_x/packed_model.zip \
        --results_md exp/RESULTS.md --results_json exp/results.json --out_dir exp/asr_x/hf_repo \
        [--decode_config conf/decode_asr.yaml] [--hf_repo ORG/NAME] [--dry_run true]

As ESPnet's ``asr.sh`` does with ``hf_repo``: ``--out_dir`` is rebuilt from scratch and holds
the packed model unpacked (``meta.yaml`` and the files it names under their packed paths:
training config, checkpoint, tokenizer, LM), ``RESULTS.md``, the decoding config
(``decode_config.yaml``) and a ``README.md`` model card generated from the training config,
the data it names, ``results.json``, the licence and the citations. That folder is what the
Hub serves: ``Speech2Text.from_pretrained("ORG/NAME")`` (espnet_model_zoo) downloads it and
resolves ``meta.yaml``. The plugins the config names (``ssl_conformer``, ``logmel``) come
from ``pip install espnet-ext``, which registers them at start-up (no import needed).

With ``--hf_repo ORG/NAME`` the folder is uploaded with ``huggingface_hub``
(``HfApi.create_repo(exist_ok=True)``, then ``upload_folder``; log in first with
``hf auth login`` or ``HF_TOKEN``). ``--dry_run true`` builds the folder and lists what
would be uploaded and where, uploading nothing.
"""

import argparse
import json
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Dict, List, Optional

import yaml

# Decoding options of espnet2.bin.asr_inference.Speech2Text that a decode config may set.
_S2T_KEYS = (
    "beam_size",
    "ctc_weight",
    "lm_weight",
    "ngram_weight",
    "penalty",
    "nbest",
    "maxlenratio",
    "minlenratio",
    "normalize_length",
)
_DATASETS = {"librispeech": ["openslr/librispeech_asr"]}
CITATIONS = """\
@inproceedings{watanabe2018espnet,
  author = {Shinji Watanabe and Takaaki Hori and Shigeki Karita and Tomoki Hayashi and Jiro Nishitoba and Yuya Unno and Nelson Enrique Yalta Soplin and Jahn Heymann and Matthew Wiesner and Nanxin Chen and Adithya Renduchintala and Tsubasa Ochiai},
  title = {{ESPnet}: End-to-End Speech Processing Toolkit},
  booktitle = {Proc. Interspeech},
  pages = {2207--2211},
  year = {2018},
  doi = {10.21437/Interspeech.2018-1456}
}

@inproceedings{chiu2022bestrq,
  author = {Chung-Cheng Chiu and James Qin and Yu Zhang and Jiahui Yu and Yonghui Wu},
  title = {Self-supervised Learning with Random-projection Quantizer for Speech Recognition},
  booktitle = {Proc. 39th International Conference on Machine Learning (ICML)},
  series = {Proceedings of Machine Learning Research},
  volume = {162},
  pages = {3915--3924},
  year = {2022}
}"""


def _yaml(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def _first_paths(entries) -> List[str]:
    return [t[0] if isinstance(t, (list, tuple)) else str(t).split(",")[0] for t in entries or []]


def decode_kwargs(decode_config: Optional[Path]) -> Dict:
    if decode_config is None:
        return {}
    cfg = _yaml(decode_config)
    return {k: cfg[k] for k in _S2T_KEYS if k in cfg}


def _model_index(name: str, rows: List[Dict], dataset: str) -> List[Dict]:
    results = []
    for r in rows:
        metrics = [
            {"type": "wer", "value": r["wer"], "name": f"WER ({r['decode']})"},
            {"type": "cer", "value": r["cer"], "name": f"CER ({r['decode']})"},
        ]
        results.append(
            {
                "task": {"type": "automatic-speech-recognition", "name": "Automatic Speech Recognition"},
                "dataset": {"type": dataset, "name": r["test_set"], "split": r["test_set"]},
                "metrics": metrics,
            }
        )
    return [{"name": name, "results": results}]


def render_card(
    repo_id: str,
    meta: dict,
    train_cfg: dict,
    rows: List[Dict],
    *,
    license: str,
    language: str,
    datasets: List[str],
    corpus: str,
    decode: Dict,
    has_lm: bool,
) -> str:
    enc, dec = train_cfg.get("encoder_conf", {}), train_cfg.get("decoder_conf", {})
    init = train_cfg.get("init_param") or []
    token_list = train_cfg.get("token_list") or []
    front = {
        "license": license,
        "language": [language],
        "library_name": "espnet",
        "pipeline_tag": "automatic-speech-recognition",
        "tags": ["espnet", "audio", "automatic-speech-recognition", "best-rq", "conformer"],
    }
    if datasets:
        front["datasets"] = datasets
    if rows:
        front["model-index"] = _model_index(repo_id, rows, datasets[0] if datasets else corpus)
    files = {**meta.get("yaml_files", {}), **meta.get("files", {})}
    kw = "".join(f", {k}={v!r}" for k, v in decode.items())
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {repo_id}: BEST-RQ pre-trained Conformer, CTC/attention ASR (ESPnet)",
        "",
        "## What it is",
        "",
        f"An ESPnet2 (`{meta.get('espnet', '?')}`, torch `{meta.get('torch', '?')}`) speech recognizer: a "
        f"Conformer encoder (`{train_cfg.get('encoder', '?')}`, {enc.get('num_blocks', '?')} blocks, "
        f"dimension {enc.get('output_size', '?')}, {enc.get('attention_heads', '?')} heads) "
        + (
            "initialized from BEST-RQ self-supervised pre-training (Chiu et al., 2022) on unlabeled speech, "
            if init
            else "trained from scratch, "
        )
        + f"and a `{train_cfg.get('decoder', '?')}` decoder ({dec.get('num_blocks', '?')} blocks), trained "
        f"jointly with CTC (weight {train_cfg.get('model_conf', {}).get('ctc_weight', '?')}). Input: 16 kHz "
        f"mono speech (frontend `{train_cfg.get('frontend', '?')}`); output: {train_cfg.get('token_type', '?')} "
        f"units, {len(token_list)} in the vocabulary."
        + (" Decoding adds a token-level language model (shipped here)." if has_lm else ""),
        "",
        "The encoder and frontend are plugins of the `espnet-ext` package "
        "(`ssl_conformer`, `logmel`): install it next to ESPnet. It registers them at Python "
        "start-up, so stock ESPnet code loads this model with no extra import.",
        "",
        "## Training data",
        "",
        f"- corpus: `{corpus}`" + (f" ({', '.join(datasets)})" if datasets else ""),
        f"- fine-tuning (labeled): {', '.join(f'`{p}`' for p in _first_paths(train_cfg.get('train_data_path_and_name_and_type'))) or '?'}",
        f"- validation: {', '.join(f'`{p}`' for p in _first_paths(train_cfg.get('valid_data_path_and_name_and_type'))) or '?'}",
        f"- encoder initialization: {', '.join(f'`{i}`' for i in init) or 'none (from scratch)'}",
        "",
        "## Configs",
        "",
        *[f"- `{k}`: `{v}`" for k, v in files.items()],
        *(["- `decode_config.yaml`: the decoding options of the results below"] if decode else []),
        f"- training recipe config: `{train_cfg.get('config', '?')}`",
        "",
        "## Results",
        "",
        "WER with its 95% bootstrap confidence interval over utterances; `RESULTS.md` has every "
        "table, the environment and the paired comparisons.",
        "",
        *(
            ["|test set|decoding|utts|WER|WER 95% CI|CER|", "|---|---|---|---|---|---|"]
            if rows
            else ["(results.json has no entry for this model: run stage 7 first.)"]
        ),
        *[
            f"|{r['test_set']}|`{r['decode']}`|{r['n_utts']}|{r['wer']:.2f}|"
            + (f"[{r['wer_ci_low']:.2f}, {r['wer_ci_high']:.2f}]" if r.get("wer_ci_low") is not None else "-")
            + f"|{r['cer']:.2f}|"
            for r in rows
        ],
        "",
        "## Usage",
        "",
        "```sh",
        "pip install espnet==202611 soundfile",
        "pip install espnet-ext  # this recipe's plugin package (from its repository or a wheel)",
        "```",
        "",
        "```python",
        "import soundfile",
        "from espnet2.bin.asr_inference import Speech2Text",
        "",
        f"speech2text = Speech2Text.from_pretrained({repo_id!r}{kw})",
        'speech, rate = soundfile.read("speech.wav", dtype="float32")  # 16 kHz mono',
        "text, tokens, token_ids, hyp = speech2text(speech)[0]",
        "print(text)",
        "```",
        "",
        "Or from the command line, ESPnet's own decoder (a Kaldi-style `wav.scp`):",
        "",
        "```sh",
        f"python -m espnet2.bin.asr_inference --model_tag {repo_id} --ngpu 0 \\",
        "    "
        + "".join(f"--{k} {v} " for k, v in decode.items())
        + "--data_path_and_name_and_type wav.scp,speech,sound --output_dir decoded",
        "```",
        "",
        "## Licence",
        "",
        f"`{license}`.",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATIONS,
        "```",
        "",
    ]
    return "\n".join(lines)


def build(
    packed_model: Path,
    out_dir: Path,
    results_md: Optional[Path],
    results_json: Optional[Path],
    repo_id: str,
    *,
    decode_config: Optional[Path] = None,
    license: str = "cc-by-4.0",
    language: str = "en",
    datasets: Optional[List[str]] = None,
    corpus: str = "?",
) -> List[Path]:
    """Rebuild ``out_dir``; returns its files (relative paths), sorted."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    with zipfile.ZipFile(packed_model) as z:
        for name in z.namelist():
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise ValueError(f"{packed_model}: unsafe member {name}")
        z.extractall(out_dir)
    meta = _yaml(out_dir / "meta.yaml")
    train_cfg = _yaml(out_dir / meta["yaml_files"]["asr_train_config"])
    model_name = Path(meta["yaml_files"]["asr_train_config"]).parent.name
    if results_md is not None and results_md.exists():
        shutil.copy(results_md, out_dir / "RESULTS.md")
    rows = []
    if results_json is not None and results_json.exists():
        rows = [e for e in json.loads(results_json.read_text()) if e.get("model") == model_name]
    decode = decode_kwargs(decode_config)
    if decode_config is not None:
        shutil.copy(decode_config, out_dir / "decode_config.yaml")
    if datasets is None:
        datasets = _DATASETS.get(corpus, [])
    has_lm = "lm_train_config" in meta.get("yaml_files", {})
    (out_dir / "README.md").write_text(
        render_card(
            repo_id,
            meta,
            train_cfg,
            rows,
            license=license,
            language=language,
            datasets=datasets,
            corpus=corpus,
            decode=decode,
            has_lm=has_lm,
        ),
        encoding="utf-8",
    )
    return sorted(p.relative_to(out_dir) for p in out_dir.rglob("*") if p.is_file())


def upload(out_dir: Path, repo_id: str, api=None, private: bool = False) -> None:
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    api.create_repo(repo_id=repo_id, repo_type="model", exist_ok=True, private=private)
    api.upload_folder(
        folder_path=str(out_dir),
        repo_id=repo_id,
        repo_type="model",
        commit_message="Upload the ESPnet model (espnet_ext stage 10)",
    )


def _bool(v: str) -> bool:
    if v.lower() in ("true", "1", "yes"):
        return True
    if v.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {v!r}")


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--packed_model", type=Path, required=True, help="stage 8's zip")
    p.add_argument("--out_dir", type=Path, required=True, help="the repository folder (rebuilt)")
    p.add_argument("--results_md", type=Path)
    p.add_argument("--results_json", type=Path)
    p.add_argument("--decode_config", type=Path, help="the decoding options shown in the card")
    p.add_argument("--hf_repo", default="", help="ORG/NAME: upload there (empty: build the folder only)")
    p.add_argument("--dry_run", type=_bool, default=False, help="list what would be uploaded; upload nothing")
    p.add_argument("--private", type=_bool, default=False, help="create the Hub repository private")
    p.add_argument("--license", default="cc-by-4.0")
    p.add_argument("--language", default="en")
    p.add_argument(
        "--datasets", default=None, help="Hub data set ids, space-separated (default: from --corpus)"
    )
    p.add_argument("--corpus", default="?")
    args = p.parse_args(argv)
    repo_id = args.hf_repo or f"<ORG>/{args.out_dir.parent.name}"
    if not args.packed_model.is_file():
        if args.dry_run:
            print(
                f"model_card (dry run): would build {args.out_dir} from {args.packed_model} "
                f"(not there yet: stage 8 writes it) and "
                + (
                    f"upload it to the Hugging Face Hub model repository {args.hf_repo}"
                    if args.hf_repo
                    else "upload nothing (no --hf_repo)"
                )
            )
            return
        p.error(f"--packed_model {args.packed_model}: no such file (run stage 8 first)")
    files = build(
        args.packed_model,
        args.out_dir,
        args.results_md,
        args.results_json,
        repo_id,
        decode_config=args.decode_config,
        license=args.license,
        language=args.language,
        datasets=None if args.datasets is None else args.datasets.split(),
        corpus=args.corpus,
    )
    total = sum((args.out_dir / f).stat().st_size for f in files)
    print(f"{args.out_dir}: {len(files)} files, {total / 1e6:.1f} MB")
    for f in files:
        print(f"  {(args.out_dir / f).stat().st_size:>12,d}  {f}")
    if not args.hf_repo:
        print("no --hf_repo: nothing uploaded")
    elif args.dry_run:
        print(
            f"dry run: would create (if absent) the Hugging Face Hub model repository {args.hf_repo} "
            f"and upload these {len(files)} files to it"
        )
    else:
        upload(args.out_dir, args.hf_repo, private=args.private)
        print(f"uploaded to the Hugging Face Hub model repository {args.hf_repo}")


if __name__ == "__main__":
    sys.exit(main())
