"""Installing the package is enough: stock ESPnet entry points see the plugins with no
``import espnet_ext`` (``espnet_ext.pth`` runs :mod:`espnet_ext._startup` at start-up).

Each check runs in a fresh process of the project's interpreter, which tools/setup_env.sh
installs the package into (``pip install -e``); none of the code run imports espnet_ext.
"""

import subprocess
import sys

import _tiny_asr
import pytest

REINSTALL = (
    "espnet_ext.pth is not installed in this environment: re-run tools/setup_env.sh (pip install -e .)"
)


def _run(code_or_args, cwd=None, env_home=None, timeout=600):
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    env = None
    if env_home is not None:
        import os

        env = {**os.environ, "HOME": str(env_home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def test_startup_hook_is_installed_and_cheap():
    r = _run(
        "import sys; print('espnet_ext.register' in sys.modules, "
        "'torch' in sys.modules, 'espnet2' in sys.modules, 'importlib.abc' in sys.modules)"
    )
    assert r.returncode == 0, r.stderr
    installed, torch, espnet, abc = r.stdout.split()
    assert installed == "True", REINSTALL
    assert (torch, espnet, abc) == ("False", "False", "False")  # nothing heavy at start-up


def test_the_one_liner():
    r = _run("import espnet2.tasks.asr as a; print('ssl_conformer' in a.encoder_choices.classes)")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "True", REINSTALL


def test_stock_trainer_parsers_accept_the_plugins():
    code = """
from espnet2.bin.asr_train import get_parser as asr
from espnet2.bin.ssl_train import get_parser as ssl
a = asr().parse_args(["--encoder", "ssl_conformer", "--frontend", "logmel", "--scheduler", "warmupcosinelr"])
s = ssl().parse_args(["--encoder", "ssl_conformer"])
print(a.encoder, a.frontend, a.scheduler, s.encoder)
"""
    r = _run(code)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split()[-4:] == ["ssl_conformer", "logmel", "warmupcosinelr", "ssl_conformer"]


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    work = tmp_path_factory.mktemp("tiny")
    exp = _tiny_asr.build(work)
    zip_path = _tiny_asr.pack(exp)  # stock python -m espnet2.bin.pack, fresh process
    wav = _tiny_asr.write_wav(work / "a.wav")
    return work, zip_path, wav


def test_stock_asr_inference_decodes_with_the_packed_model(packed, tmp_path):
    work, zip_path, wav = packed
    (tmp_path / "wav.scp").write_text(f"utt1 {wav}\n")
    r = _run(
        [
            "-m",
            "espnet2.bin.asr_inference",
            "--model_tag",
            str(zip_path),
            "--ngpu",
            "0",
            "--beam_size",
            "2",
            "--batch_size",
            "1",
            "--maxlenratio",
            "0.3",
            "--data_path_and_name_and_type",
            "wav.scp,speech,sound",
            "--output_dir",
            "out",
        ],
        cwd=tmp_path,
        env_home=tmp_path / "home",
    )
    assert r.returncode == 0, r.stderr[-4000:]
    text = (tmp_path / "out" / "1best_recog" / "text").read_text()
    assert text.startswith("utt1"), text


def test_stock_speech2text_from_pretrained(packed, tmp_path):
    work, zip_path, wav = packed
    code = f"""
import soundfile
from espnet2.bin.asr_inference import Speech2Text
s2t = Speech2Text.from_pretrained({str(zip_path)!r}, beam_size=2, maxlenratio=0.3)
speech, rate = soundfile.read({str(wav)!r}, dtype="float32")
print("HYP:", repr(s2t(speech)[0][0]))
"""
    r = _run(code, cwd=tmp_path, env_home=tmp_path / "home")
    assert r.returncode == 0, r.stderr[-4000:]
    assert any(line.startswith("HYP:") for line in r.stdout.splitlines())
