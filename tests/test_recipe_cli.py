"""The recipe's command-line contract: Kaldi-style options, --help, unknown options."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ROOT / "egs2" / "librispeech_ssl" / "asr1"


def _run(args, cwd=ROOT):
    return subprocess.run(["bash", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


COMMON = [
    ("stage", "1"),
    ("stop_stage", "8"),
    ("nj", "2"),
    ("datadir", "data"),
    ("dumpdir", "dump"),
    ("expdir", "exp"),
    ("test_sets", "test_clean test_other"),
    ("use_lm", "true"),
]
EMBEDDED = [
    ("corpus", "embedded"),
    ("ngpu", "0"),
    ("num_nodes", "1"),
    ("nbpe", "40"),
    ("train_set", "train_clean"),
    ("valid_set", "dev_clean"),
    ("pretrain_sources", "unlabeled train_clean"),
    ("finetune_config", "conf/finetune_conformer_transformer_embedded.yaml"),
    ("ablation_decode_config", "conf/tuning/decode_asr_embedded_ablation.yaml"),
]
FULL_SCALE = [
    ("corpus", "librispeech"),
    ("ngpu", "8"),
    ("num_nodes", "16"),
    ("cmd_backend", "slurm"),
    ("nbpe", "5000"),
    ("train_set", "train_960"),
    ("valid_set", "dev_other"),
    ("pretrain_sources", "ll_small ll_medium ll_large cv_validated train_960"),
    ("finetune_config", "conf/tuning/finetune_conformer_transformer_public.yaml"),
    ("lm_config", "conf/train_lm.yaml"),
    ("ablation_config", ""),
]


def _help_line(out, opt):
    line = next((ln for ln in out.splitlines() if ln.strip().startswith(f"--{opt} ")), None)
    assert line is not None, f"--{opt} missing from --help:\n{out}"
    return line


@pytest.mark.parametrize(
    "cwd,expected",
    [(ROOT, COMMON + EMBEDDED), (UPSTREAM, COMMON + FULL_SCALE)],
    ids=["top-embedded", "egs2-full-scale"],
)
def test_help_lists_every_option_with_default(cwd, expected):
    """--help lists every option of ssl_asr.sh with its value once the recipe's run.sh set it."""
    r = _run(["./run.sh", "--help"], cwd=cwd)
    assert r.returncode == 0, r.stderr
    for opt, default in expected:
        line = _help_line(r.stdout, opt)
        assert f"[{default}]" in line, line
    block = (ROOT / "ssl_asr.sh").read_text().split("# <options>\n")[1].split("# </options>")[0]
    for name in [ln.split("=")[0] for ln in block.splitlines() if "=" in ln]:
        _help_line(r.stdout, name)


def test_corpus_values_are_required_options_of_the_stage_script():
    """ssl_asr.sh has no corpus in its defaults: the corpus's run.sh passes them."""
    r = _run(["./ssl_asr.sh", "--help"])
    assert r.returncode == 0
    for opt in ["corpus", "train_set", "valid_set", "test_sets", "nbpe", "pretrain_config", "decode_config"]:
        assert "[] required" in _help_line(r.stdout, opt)
    r = _run(["./ssl_asr.sh", "--corpus", "embedded"])
    assert r.returncode != 0 and "--pretrain_sources is required" in r.stdout + r.stderr
    # Stage 9's configs are required only when stage 9 is to run.
    r = _run(
        ["./run.sh", "--stage", "9", "--stop_stage", "9", "--ablation_config", "", "--expdir", "/nonexistent"]
    )
    assert r.returncode != 0 and "--ablation_config is required" in r.stdout + r.stderr


def test_unknown_option_is_an_error():
    r = _run(["./run.sh", "--no_such_option", "3"])
    assert r.returncode != 0
    assert "unknown option --no_such_option" in r.stderr


def test_boolean_option_rejects_other_values():
    r = _run(["./ssl_asr.sh", "--init_from_pretrained", "yes"])
    assert r.returncode != 0
    assert "takes true or false" in r.stderr


def test_option_needs_a_value_and_positional_args_rejected():
    r = _run(["./ssl_asr.sh", "--nj"])
    assert r.returncode != 0 and "needs a value" in r.stderr
    r = _run(["./ssl_asr.sh", "stray"])
    assert r.returncode != 0 and "unexpected positional arguments" in r.stdout + r.stderr


def test_dash_and_equals_forms(tmp_path):
    script = tmp_path / "s.sh"
    script.write_text(
        "# <options>\nfoo_bar=1  # a number\nflag=false  # a flag\n# </options>\n"
        f'. {ROOT}/utils/parse_options.sh\necho "$foo_bar $flag $*"\n'
    )
    r = subprocess.run(
        ["bash", str(script), "--foo-bar=7", "--flag", "true", "rest"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "7 true rest"


def test_upstream_layout_links_resolve():
    # The recipe folder holds what is recipe-specific (conf/, local/); the shared scripts are links.
    for name in ["ssl_asr.sh", "path.sh", "cmd.sh", "db.sh", "utils"]:
        p = UPSTREAM / name
        assert p.is_symlink() and p.exists(), name
        assert not Path(p.readlink()).is_absolute(), f"{name} must be a relative link"
    for name in ["conf", "local"]:  # real folders in the recipe, relative links at the top level
        real, top = UPSTREAM / name, ROOT / name
        assert real.is_dir() and not real.is_symlink(), name
        assert top.is_symlink() and not Path(top.readlink()).is_absolute() and top.resolve() == real.resolve()
    conf = UPSTREAM / "conf"
    # Variants (ablation, geometry and data-size variants) live under conf/tuning/, as ESPnet
    # recipes keep them; conf/ itself holds one stable name per role.
    variants = {p.name for p in (conf / "tuning").glob("*.yaml")}
    assert {
        "decode_asr_embedded_ablation.yaml",
        "finetune_conformer_transformer_embedded_lowres.yaml",
    } <= variants
    assert not variants & {p.name for p in conf.glob("*.yaml")}
    assert not any(n.endswith(("_lowres.yaml", "_ablation.yaml", "_fill.yaml")) for n in os.listdir(conf))


def test_language_model_options_fail_before_any_work(tmp_path):
    env_run = lambda args, **env: subprocess.run(  # noqa: E731
        [
            "bash",
            "./run.sh",
            "--datadir",
            str(tmp_path / "data"),
            "--expdir",
            str(tmp_path / "exp"),
            "--dumpdir",
            str(tmp_path / "dump"),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, **env},
    )
    # LibriSpeech without its LM corpus: the message says where to get it and how to do without.
    (tmp_path / "ls").mkdir()
    r = env_run(["--corpus", "librispeech"], LIBRISPEECH=str(tmp_path / "ls"), LIBRISPEECH_LM_TEXT="")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "LIBRISPEECH_LM_TEXT" in out and "--use_lm false" in out
    r = env_run(["--use_lm", "maybe"])
    assert r.returncode != 0 and "takes true or false" in r.stderr
    # An LM that the decoding config would ignore (lm_weight 0) is a configuration error.
    dec = tmp_path / "decode.yaml"
    dec.write_text(
        (ROOT / "conf" / "decode_asr_embedded.yaml").read_text().replace("lm_weight:", "lm_weight: 0.0 #")
    )
    r = env_run(["--decode_config", str(dec)])
    assert r.returncode != 0 and "lm_weight is 0.0" in r.stdout + r.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "exp").exists()


@pytest.mark.slow
def test_full_scale_recipe_dry_run_from_its_folder(tmp_path):
    """egs2/librispeech_ssl/asr1/run.sh is the README's full-scale run as configuration: its dry
    run prints the three 128-rank Slurm launches (LM, pre-training, fine-tuning), writes nothing."""
    (tmp_path / "ls").mkdir()
    (tmp_path / "lm.txt.gz").write_bytes(b"")
    env = {
        **__import__("os").environ,
        "LIBRISPEECH": str(tmp_path / "ls"),
        "LIBRISPEECH_LM_TEXT": str(tmp_path / "lm.txt.gz"),
    }
    r = subprocess.run(["bash", "./run.sh", "--dry_run", "true", "--expdir", str(tmp_path / "exp"),
                        "--datadir", str(tmp_path / "data"), "--dumpdir", str(tmp_path / "dump")],
                       cwd=UPSTREAM, capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert out.count("sbatch --wait") == 3
    assert out.count("16 nodes x 8 GPUs = 128 ranks") == 3
    for expected in [
        "--config conf/tuning/pretrain_conformer_bestrq_public.yaml",
        "--config conf/tuning/finetune_conformer_transformer_public.yaml",
        "--config conf/train_lm.yaml",
        "bpe_unigram5000",
        "/train_960/",
        "/dev_other/",
    ]:
        assert expected in out, expected
    assert not any((tmp_path / d).exists() for d in ["exp", "data", "dump"])
