"""The recipe's command-line contract: Kaldi-style options, --help, unknown options."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ROOT / "egs2" / "librispeech_ssl" / "asr1"


def _run(args, cwd=ROOT):
    return subprocess.run(["bash", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("cwd", [ROOT, UPSTREAM], ids=["top", "egs2"])
def test_help_lists_every_option_with_default(cwd):
    r = _run(["./run.sh", "--help"], cwd=cwd)
    assert r.returncode == 0, r.stderr
    for opt, default in [
        ("stage", "1"), ("stop_stage", "8"), ("nj", "2"), ("ngpu", "0"), ("num_nodes", "1"),
        ("datadir", "data"), ("dumpdir", "dump"), ("expdir", "exp"),
        ("train_set", "train_clean"), ("valid_set", "dev_clean"), ("test_sets", "test_clean test_other"),
    ]:
        line = next((ln for ln in r.stdout.splitlines() if ln.strip().startswith(f"--{opt} ")), None)
        assert line is not None, f"--{opt} missing from --help:\n{r.stdout}"
        assert f"[{default}]" in line, line


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
        f". {ROOT}/utils/parse_options.sh\necho \"$foo_bar $flag $*\"\n"
    )
    r = subprocess.run(["bash", str(script), "--foo-bar=7", "--flag", "true", "rest"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "7 true rest"


def test_upstream_layout_links_resolve():
    # The recipe folder holds what is recipe-specific (conf/); the shared scripts are links.
    for name in ["ssl_asr.sh", "path.sh", "cmd.sh", "db.sh", "local", "utils"]:
        p = UPSTREAM / name
        assert p.is_symlink() and p.exists(), name
        assert not Path(p.readlink()).is_absolute(), f"{name} must be a relative link"
    conf = UPSTREAM / "conf"
    assert conf.is_dir() and not conf.is_symlink()
    top = ROOT / "conf"
    assert top.is_symlink() and not Path(top.readlink()).is_absolute() and top.resolve() == conf.resolve()
    # Variants (ablation, tuning probes) live under conf/tuning/, as ESPnet recipes keep them.
    assert sorted(p.name for p in (conf / "tuning").glob("*.yaml")) == [
        "decode_asr_embedded_ablation.yaml", "finetune_conformer_transformer_embedded_lowres.yaml"]


def test_language_model_options_fail_before_any_work(tmp_path):
    env_run = lambda args, **env: subprocess.run(  # noqa: E731
        ["bash", "./run.sh", "--datadir", str(tmp_path / "data"), "--expdir", str(tmp_path / "exp"),
         "--dumpdir", str(tmp_path / "dump"), *args], cwd=ROOT, capture_output=True, text=True,
        timeout=120, env={**__import__("os").environ, **env})
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
    dec.write_text((ROOT / "conf" / "decode_asr_embedded.yaml").read_text().replace("lm_weight:", "lm_weight: 0.0 #"))
    r = env_run(["--decode_config", str(dec)])
    assert r.returncode != 0 and "lm_weight is 0.0" in r.stdout + r.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "exp").exists()
