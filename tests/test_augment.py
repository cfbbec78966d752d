"""Waveform augmentation: the noise and room-response sets (MUSAN and RIRS_NOISES layouts,
the embedded corpus's own), and ESPnet's CommonPreprocessor through the sharded iterator of
the real ASR task: training batches are augmented, validation batches never are."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

from espnet_ext.data import augment as A
from espnet_ext.features import extract as X

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


def _wav(path: Path, x: np.ndarray, rate: int = SR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, x, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """A small MUSAN and RIRS_NOISES in their distributed layouts, with bad files."""
    root = tmp_path_factory.mktemp("aug")
    rng = np.random.default_rng(0)
    musan = root / "musan"
    for i in range(3):
        _wav(musan / "noise" / "free-sound" / f"noise-free-sound-{i:04d}.wav", 0.1 * rng.standard_normal(SR))
    _wav(
        musan / "noise" / "sound-bible" / "noise-sound-bible-0000.wav", 0.1 * rng.standard_normal(8000), 8000
    )
    _wav(musan / "noise" / "sound-bible" / "noise-sound-bible-0001.wav", 0.1 * rng.standard_normal((SR, 2)))
    (musan / "noise" / "sound-bible" / "noise-sound-bible-0002.wav").write_bytes(b"RIFF" + rng.bytes(100))
    _wav(musan / "music" / "fma" / "music-fma-0000.wav", 0.1 * rng.standard_normal(SR))
    _wav(musan / "speech" / "librivox" / "speech-librivox-0000.wav", 0.1 * rng.standard_normal(SR))
    rirs = root / "RIRS_NOISES"
    lines = []
    for r in (1, 2):
        for k in (1, 2):
            h = np.zeros(2000)
            h[10], h[200] = 1.0, 0.3 * r
            rel = f"RIRS_NOISES/simulated_rirs/smallroom/Room{r:03d}/Room{r:03d}-{k:05d}.wav"
            _wav(root / rel, h)
            lines.append(f"--rir-id smallroom-Room{r:03d}-{k:05d} --room-id smallroom-Room{r:03d} {rel}\n")
    lines.append("--rir-id smallroom-Room009-00001 --room-id smallroom-Room009 "
                 "RIRS_NOISES/simulated_rirs/smallroom/Room009/Room009-00001.wav\n")  # fmt: skip
    (rirs / "simulated_rirs" / "smallroom" / "rir_list").write_text("".join(lines))
    _wav(
        rirs / "simulated_rirs" / "mediumroom" / "Room001" / "Room001-00001.wav", np.eye(1, 1000)[0]
    )  # no rir_list
    _wav(
        rirs / "real_rirs_isotropic_noises" / "air_type1_air_binaural_1.wav",
        0.1 * rng.standard_normal((4000, 2)),
    )
    return musan, rirs


def _rejected(d: Path) -> dict:
    return dict(line.split("\t") for line in (d / "rejected").read_text().splitlines())


def test_musan_and_rirs_layouts_every_file_kept_or_rejected_with_its_reason(layouts, tmp_path):
    musan, rirs = layouts
    r = subprocess.run(
        [sys.executable, "-m", "espnet_ext.bin.prepare_noise", "--datadir", str(tmp_path), "--musan", str(musan),
         "--rirs", str(rirs)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    noise = tmp_path / "musan_noise"
    kept = dict(line.split() for line in (noise / "wav.scp").read_text().splitlines())
    assert sorted(kept) == [
        f"noise-noise-free-sound-{i:04d}" for i in range(3)
    ]  # noise only: no music, no speech
    rejected = _rejected(noise)
    assert rejected["noise-noise-sound-bible-0000"] == "8000 Hz, not 16000"
    assert rejected["noise-noise-sound-bible-0001"].startswith("2 channels")
    assert rejected["noise-noise-sound-bible-0002"].startswith("unreadable")
    assert "found 6 noise files = kept 3 + rejected 3" in r.stderr
    rir = tmp_path / "rirs"
    kept = dict(line.split() for line in (rir / "wav.scp").read_text().splitlines())
    assert sorted(kept) == ["mediumroom-Room001-00001"] + [
        f"smallroom-Room{r:03d}-{k:05d}" for r in (1, 2) for k in (1, 2)
    ]
    assert all(Path(p).is_file() for p in kept.values())  # rir_list paths resolved from RIRS_NOISES' parent
    assert _rejected(rir) == {"smallroom-Room009-00001": "missing file"}
    # a re-run over the same files rewrites nothing
    before = {p: p.stat().st_mtime_ns for d in (noise, rir) for p in d.iterdir()}
    assert subprocess.run(r.args, capture_output=True).returncode == 0
    assert {p: p.stat().st_mtime_ns for d in (noise, rir) for p in d.iterdir()} == before


def test_bad_layout_is_named(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "espnet_ext.bin.prepare_noise", "--datadir", str(tmp_path), "--musan", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 2 and "no noise/ folder: not MUSAN's layout" in r.stderr


def test_embedded_noise_sets_are_deterministic_and_read_as_the_real_layouts(tmp_path):
    sys.path.insert(0, str(ROOT / "local"))
    from embedded_corpus.noise import make_noise_sets

    a, b = tmp_path / "a", tmp_path / "b"
    sa, sb = make_noise_sets(a, seed=3), make_noise_sets(b, seed=3)
    assert sa == sb and sa["noise_files"] == 24 and sa["rirs"] == 32
    files = sorted(p.relative_to(a) for p in a.rglob("*.wav"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.wav"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    noise = A.musan_files(a / "musan")
    rirs = A.rir_files(a / "RIRS_NOISES")
    assert len(noise) == 24 and len(rirs) == 32 and all(A._check(p) == "" for _, p in noise + rirs)
    h, rate = soundfile.read(rirs[0][1])
    assert rate == SR and np.argmax(np.abs(h)) < 0.01 * SR  # the direct path first
    mtimes = {p: p.stat().st_mtime_ns for p in a.rglob("*")}
    assert make_noise_sets(a, seed=3) == sa  # complete: not rewritten
    assert {p: p.stat().st_mtime_ns for p in a.rglob("*")} == mtimes


def test_train_opts_follow_the_config(tmp_path):
    def opts(conf, check=False):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump(conf))
        cmd = [sys.executable, "-m", "espnet_ext.bin.prepare_noise", "--datadir", str(tmp_path / "data"),
               "--train_opts", str(cfg)] + (["--check"] if check else [])  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True)

    assert (
        opts({"batch_type": "numel"}).stdout.split() == []
    )  # ESPnet's 1.0 defaults never apply by themselves
    r = opts({"noise_apply_prob": 0.5, "rir_apply_prob": 0.0})
    assert r.stdout.split() == ["--noise_scp", str(tmp_path / "data" / "musan_noise" / "wav.scp")]
    r = opts({"noise_apply_prob": 0.5, "rir_apply_prob": 0.3}, check=True)
    assert r.returncode == 2 and "musan_noise/wav.scp is missing: run stage 1" in r.stderr


@pytest.fixture(scope="module")
def raw_dump(tmp_path_factory, layouts):
    """Audio shards of a few tone "utterances" with transcripts, and the augmentation lists."""
    root = tmp_path_factory.mktemp("raw")
    data = root / "data" / "train"
    data.mkdir(parents=True)
    t = np.arange(2 * SR) / SR
    utts = [f"u{i}" for i in range(6)]
    for i, u in enumerate(utts):
        _wav(root / "audio" / f"{u}.flac", 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t[: SR + 2000 * i]))
    (data / "wav.scp").write_text("".join(f"{u} {root / 'audio' / f'{u}.flac'}\n" for u in utts))
    (data / "text").write_text("".join(f"{u} A B\n" for u in utts))
    (data / "utt2spk").write_text("".join(f"{u} s\n" for u in utts))
    (data / "spk2utt").write_text("s " + " ".join(utts) + "\n")
    X.run(str(data), str(root / "dump"), nj=1, chunk_size=4, progress=False, feats_type="raw")
    musan, rirs = layouts
    A.write_set(A.musan_files(musan), root / "data" / "musan_noise", "noise files")
    A.write_set(A.rir_files(rirs), root / "data" / "rirs", "RIRs")
    return root


def _batches(root: Path, config: Path, mode: str) -> dict:
    """utt -> speech of one pass of the real ASR task's iterator (the config's preprocessor)."""
    from espnet2.train.distributed_utils import DistributedOption

    import espnet_ext
    from espnet_ext.tasks.asr import ASRTask

    espnet_ext.register()
    tokens = root / "tokens.txt"
    tokens.write_text("<blank>\n<unk>\nA\nB\n<space>\n<sos/eos>\n")
    dump = root / "dump"
    aug = subprocess.run(
        [sys.executable, "-m", "espnet_ext.bin.prepare_noise", "--datadir", str(root / "data"), "--train_opts",
         str(config), "--check"], capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    args = ASRTask.get_parser().parse_args(
        ["--config", str(config), "--token_list", str(tokens), "--token_type", "char", "--output_dir",
         str(root / "exp"), "--batch_bins", "1000000", "--valid_batch_bins", "1000000"]
        + [f"--{m}_data_path_and_name_and_type={dump}/wav.scp,speech,kaldi_ark" for m in ("train", "valid")]
        + [f"--{m}_data_path_and_name_and_type={dump}/text,text,text" for m in ("train", "valid")]
        + [f"--{m}_shape_file={dump}/speech_shape" for m in ("train", "valid")]
        + aug
    )  # fmt: skip
    factory = ASRTask.build_iter_factory(args, DistributedOption(), mode=mode)
    out = {}
    for ids, batch in factory.build_iter(1):
        for i, u in enumerate(ids):
            n = int(batch["speech_lengths"][i])
            assert batch["speech"].dtype.is_floating_point and str(batch["speech"].dtype) == "torch.float32"
            out[u] = batch["speech"][i, :n].numpy()
    return out


def test_augmentation_changes_training_batches_only(raw_dump, tmp_path):
    conf = yaml.safe_load(
        (ROOT / "conf" / "tuning" / "finetune_conformer_transformer_embedded_aug.yaml").read_text()
    )
    conf.update(noise_apply_prob=1.0, rir_apply_prob=1.0, max_epoch=1, num_iters_per_epoch=None)
    conf["preprocessor_conf"]["data_aug_prob"] = 1.0  # speed 0.9 or 1.1 on every utterance
    aug = tmp_path / "aug.yaml"
    aug.write_text(yaml.safe_dump(conf))
    for key in ("noise_apply_prob", "rir_apply_prob", "preprocessor_conf"):
        conf.pop(key)
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(conf))

    clean = {
        u: soundfile.read(raw_dump / "audio" / f"{u}.flac", dtype="float32")[0]
        for u in map("u{}".format, range(6))
    }
    for mode in ("valid", "train"):
        got = _batches(raw_dump, plain, mode)
        assert sorted(got) == sorted(clean)
        for u, x in got.items():
            np.testing.assert_allclose(x, clean[u], atol=1 / 32768)  # no preprocessor effect on speech
    valid = _batches(raw_dump, aug, "valid")
    for u, x in valid.items():
        np.testing.assert_allclose(x, clean[u], atol=1 / 32768)  # validation is never augmented
    train = _batches(raw_dump, aug, "train")
    assert sorted(train) == sorted(clean)
    for u, x in train.items():
        ratio = x.size / clean[u].size  # speed 0.9 -> 1/0.9 longer (plus the RIR tail), 1.1 shorter
        assert abs(ratio - 1 / 0.9) < 0.05 or abs(ratio - 1 / 1.1) < 0.05, (u, ratio)
        assert np.isfinite(x).all() and np.abs(x).max() <= 1.0


def test_stock_common_preprocessor_stops_on_noise_then_speed(raw_dump, tmp_path):
    """Why waveform_aug exists: ESPnet 202611's CommonPreprocessor leaves mono speech (T, 1)
    after noise/RIR and its speed perturbation asserts 1-D. If this starts passing, ESPnet
    fixed it and `preprocessor: default` would do."""
    conf = yaml.safe_load(
        (ROOT / "conf" / "tuning" / "finetune_conformer_transformer_embedded_aug.yaml").read_text()
    )
    conf.update(
        preprocessor="default",
        noise_apply_prob=1.0,
        rir_apply_prob=0.0,
        max_epoch=1,
        num_iters_per_epoch=None,
    )
    conf["preprocessor_conf"]["data_aug_prob"] = 1.0
    stock = tmp_path / "stock.yaml"
    stock.write_text(yaml.safe_dump(conf))
    with pytest.raises(AssertionError, match=r"torch.Size\(\[\d+, 1\]\)"):
        _batches(raw_dump, stock, "train")


def test_augment_effect_script_and_report(tmp_path):
    """local/augment_effect.sh parses its options; local/augment_report.py tabulates the runs
    it leaves (seed 0 of the default arm is stage 5's own experiment) and names the dev winner."""
    r = subprocess.run(["local/augment_effect.sh", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "--aug_config" in r.stdout and "--sets" in r.stdout
    exp = tmp_path / "exp"
    wers = {"": (10, 20), "_seed1": (12, 22), "_aug_seed0": (9, 25), "_aug_seed1": (9, 27)}
    for suffix, (dev, other) in wers.items():
        name = "asr_ft_aug" + suffix[4:] if suffix.startswith("_aug") else "asr_ft" + suffix
        for dset, w in (("dev_clean", dev), ("test_other", other)):
            d = exp / f"{name}_pretrained" / "dec" / dset / "score"
            d.mkdir(parents=True)
            (d / "result.json").write_text(f'{{"wer": {w}, "cer": {w / 4}}}')
    r = subprocess.run(
        [sys.executable, "local/augment_report.py", "--expdir", str(exp), "--base", "ft", "--aug", "ft_aug",
         "--decode", "dec", "--sets", "dev_clean test_other"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "|dev_clean|without|0,1|11.00 ± 1.41|" in r.stdout
    assert "|test_other|with augmentation|0,1|26.00 ± 1.41|" in r.stdout
    assert "test_other: augmentation changes WER by +5.00 points (+23.8% relative)" in r.stdout
    assert "on dev_clean (the selection set): **with augmentation** wins" in r.stdout
    # A run that was not decoded on a set is named (not a traceback); --seeds leaves it out.
    (exp / "asr_ft_seed2_pretrained" / "dec" / "dev_clean" / "score").mkdir(parents=True)
    report = [sys.executable, "local/augment_report.py", "--expdir", str(exp), "--base", "ft", "--aug", "ft_aug",
              "--decode", "dec", "--sets", "dev_clean test_other"]  # fmt: skip
    r = subprocess.run(report, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and "dev_clean is not scored with dec in" in r.stderr, r.stderr
    assert "asr_ft_seed2_pretrained" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([*report, "--seeds", "1"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (
        "|dev_clean|without|1|12.00 ± 0.00|" in r.stdout
        and "|test_other|with augmentation|1|27.00 ± 0.00|" in r.stdout
    )
    r = subprocess.run(
        ["local/augment_effect.sh", "--aug_args", "--max_epoch 2"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 1 and "give it its own --aug_tag" in r.stderr
