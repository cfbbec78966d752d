"""Stage 10: the Hugging Face model-repository folder, its model card, loading the model back
from it offline with the card's own usage code, and the upload's calls (a fake HfApi)."""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import _tiny_asr
import pytest
import yaml

from espnet_ext.bin import model_card


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    work = tmp_path_factory.mktemp("card")
    exp = _tiny_asr.build(work)
    results_md = work / "exp" / "RESULTS.md"
    results_md.write_text("# RESULTS\n\n## asr_tiny\n|test set|WER|\n|---|---|\n|test_clean|99.00|\n")
    (work / "exp" / "results.json").write_text(
        json.dumps(
            [
                {
                    "model": "asr_tiny",
                    "test_set": "test_clean",
                    "decode": "decode_asr",
                    "wer": 99.0,
                    "wer_ci_low": 95.5,
                    "wer_ci_high": 102.5,
                    "cer": 80.0,
                    "n_utts": 10,
                },
                {
                    "model": "other_model",
                    "test_set": "test_clean",
                    "decode": "decode_asr",
                    "wer": 1.0,
                    "wer_ci_low": 0.5,
                    "wer_ci_high": 1.5,
                    "cer": 0.5,
                    "n_utts": 10,
                },
            ]
        )
    )
    decode = work / "decode.yaml"
    decode.write_text("beam_size: 2\nctc_weight: 0.3\nmaxlenratio: 0.3\nbatch_size: 1\n")
    zip_path = _tiny_asr.pack(exp, ["--option", "exp/RESULTS.md"])  # as stage 8 packs
    out = work / "exp" / "asr_tiny" / "hf_repo"
    files = model_card.build(
        zip_path,
        out,
        results_md,
        work / "exp" / "results.json",
        "org/tiny-asr",
        decode_config=decode,
        corpus="librispeech",
    )
    return work, out, files


def test_packed_zip_has_results(repo):
    work, _, _ = repo
    with zipfile.ZipFile(work / "exp" / "asr_tiny" / "packed_model.zip") as z:
        assert "exp/RESULTS.md" in z.namelist()


def test_folder_contents_and_card(repo):
    _, out, files = repo
    names = {str(f) for f in files}
    assert {
        "meta.yaml",
        "README.md",
        "RESULTS.md",
        "decode_config.yaml",
        "exp/asr_tiny/config.yaml",
        "exp/asr_tiny/valid.acc.ave.pth",
        "exp/RESULTS.md",
    } <= names
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["license"] == "cc-by-4.0" and front["language"] == ["en"]
    assert {"espnet", "automatic-speech-recognition", "audio"} <= set(front["tags"])
    assert front["datasets"] == ["openslr/librispeech_asr"]
    (entry,) = front["model-index"]
    assert entry["name"] == "org/tiny-asr"
    (result,) = entry["results"]  # only this model's rows of results.json
    assert result["dataset"]["name"] == "test_clean"
    assert {"type": "wer", "value": 99.0, "name": "WER (decode_asr)"} in result["metrics"]
    assert "|test_clean|`decode_asr`|10|99.00|[95.50, 102.50]|80.00|" in card
    assert "ssl_conformer" in card and "1 blocks" in card
    assert "Chiu" in card and "ICML" in card and "watanabe2018espnet" in card
    assert "import espnet_ext" not in card  # the start-up hook makes it unnecessary


def _usage_code(card: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_model_loads_back_offline_with_the_cards_usage_code(repo, tmp_path):
    """The card's Python block, run as is in a fresh process; the Hub download is replaced by
    a copy of the folder (what snapshot_download returns), nothing is fetched."""
    work, out, _ = repo
    snapshot = tmp_path / "snapshot"
    shutil.copytree(out, snapshot)
    _tiny_asr.write_wav(tmp_path / "speech.wav")
    code = _usage_code((out / "README.md").read_text())
    assert "Speech2Text.from_pretrained('org/tiny-asr', beam_size=2, ctc_weight=0.3, maxlenratio=0.3)" in code
    prelude = (
        "import espnet_model_zoo.downloader as d\n"
        f"def fake_snapshot_download(repo_id, **kw):\n"
        f"    assert repo_id == 'org/tiny-asr', repo_id\n"
        f"    return {str(snapshot)!r}\n"
        "d.snapshot_download = fake_snapshot_download\n"
    )
    env = {**os.environ, "HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [sys.executable, "-c", prelude + code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout.strip(), "the usage code printed no text"
    # Speech2Text(**files) on what the downloader resolves from the folder works the same.
    code = (
        f"from espnet_model_zoo.downloader import ModelDownloader\n"
        f"from espnet2.bin.asr_inference import Speech2Text\n"
        f"files = ModelDownloader({str(tmp_path / 'cache')!r})._unpack_cache_dir_for_huggingface({str(snapshot)!r})\n"
        f"s2t = Speech2Text(**files, beam_size=2, maxlenratio=0.3)\n"
        f"import numpy; print('N', len(s2t(numpy.zeros(8000, dtype='float32'))))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert "N 1" in r.stdout


class FakeApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, **kw):
        self.calls.append(("create_repo", kw))

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw))


def test_upload_calls(repo):
    _, out, _ = repo
    api = FakeApi()
    model_card.upload(out, "org/tiny-asr", api=api)
    assert api.calls == [
        (
            "create_repo",
            {"repo_id": "org/tiny-asr", "repo_type": "model", "exist_ok": True, "private": False},
        ),
        (
            "upload_folder",
            {
                "folder_path": str(out),
                "repo_id": "org/tiny-asr",
                "repo_type": "model",
                "commit_message": "Upload the ESPnet model (espnet_ext stage 10)",
            },
        ),
    ]


def test_cli_dry_run_lists_and_uploads_nothing_and_upload_uses_hfapi(repo, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    work, _, _ = repo
    created = []

    class Recording(FakeApi):
        def __init__(self, *a, **kw):
            super().__init__()
            created.append(self)

    monkeypatch.setattr(huggingface_hub, "HfApi", Recording)
    zip_path = work / "exp" / "asr_tiny" / "packed_model.zip"
    args = [
        "--packed_model",
        str(zip_path),
        "--out_dir",
        str(tmp_path / "hf_repo"),
        "--results_md",
        str(work / "exp" / "RESULTS.md"),
        "--hf_repo",
        "org/tiny-asr",
    ]
    model_card.main(args + ["--dry_run", "true"])
    printed = capsys.readouterr().out
    assert "dry run: would create" in printed and "org/tiny-asr" in printed
    assert "README.md" in printed and "exp/asr_tiny/valid.acc.ave.pth" in printed
    assert created == []
    model_card.main(args)
    assert [c[0] for c in created[0].calls] == ["create_repo", "upload_folder"]
    # Without the packed model yet, a dry run says what it would do instead of failing.
    model_card.main(
        ["--packed_model", str(tmp_path / "none.zip"), "--out_dir", str(tmp_path / "x"), "--dry_run", "true"]
    )
    assert "not there yet" in capsys.readouterr().out


def test_recipe_stage_10_dry_run(repo, tmp_path):
    """./run.sh --stage 10 --dry_run true: the folder is built and listed, nothing uploaded."""
    from pathlib import Path

    work, _, _ = repo
    root = Path(__file__).resolve().parents[1]
    asr_exp = tmp_path / "exp" / "asr_finetune_conformer_transformer_embedded_pretrained"
    asr_exp.mkdir(parents=True)
    shutil.copy(work / "exp" / "asr_tiny" / "packed_model.zip", asr_exp)
    r = subprocess.run(
        [
            "bash",
            "./run.sh",
            "--stage",
            "10",
            "--stop_stage",
            "10",
            "--expdir",
            str(tmp_path / "exp"),
            "--dry_run",
            "true",
            "--hf_repo",
            "org/tiny-asr",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "Stage 10 (dry run)" in r.stdout
    assert "would create (if absent) the Hugging Face Hub model repository org/tiny-asr" in r.stdout
    assert (asr_exp / "hf_repo" / "README.md").exists() and "decode_config.yaml" in r.stdout
