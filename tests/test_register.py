"""`import espnet_ext` registers every plugin into ESPnet's own choices, in any import order."""

import subprocess
import sys

import pytest

CHECK = """
from espnet2.tasks import asr, ssl, abs_task
assert asr.encoder_choices.classes["ssl_conformer"].__name__ == "SSLConformerEncoder"
assert ssl.encoder_choices.classes["ssl_conformer"] is asr.encoder_choices.classes["ssl_conformer"]
assert ssl.loss_choices.classes["best_rq"].__name__ == "BestRQLoss"
assert ssl.util_choices.classes["block_mask"].__name__ == "BestRQMasking"
assert asr.frontend_choices.classes["logmel"].__name__ == "LogMelFrontend"
assert ssl.frontend_choices.classes["logmel"] is asr.frontend_choices.classes["logmel"]
assert abs_task.scheduler_classes["warmupcosinelr"].__name__ == "WarmupCosineLR"
# The choices reach ESPnet's argument parsers.
args = asr.ASRTask.get_parser().parse_args(["--encoder", "ssl_conformer", "--frontend", "logmel",
                                             "--scheduler", "warmupcosinelr"])
assert args.encoder == "ssl_conformer" and args.scheduler == "warmupcosinelr"
print("OK")
"""


@pytest.mark.parametrize(
    "prelude",
    [
        "import espnet_ext\n",  # plugins first, ESPnet's tasks later (import hook)
        "import espnet2.tasks.asr, espnet2.tasks.ssl\nimport espnet_ext\n",  # ESPnet first
        "import espnet_ext\nespnet_ext.register()\n",  # explicit, eager
    ],
    ids=["ext-first", "espnet-first", "explicit"],
)
def test_registration_in_a_fresh_process(prelude):
    r = subprocess.run([sys.executable, "-c", prelude + CHECK], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().endswith("OK")


def test_importing_espnet_ext_does_not_import_espnet_tasks():
    code = "import sys, espnet_ext; print('espnet2.tasks.asr' in sys.modules, 'torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


def test_refuses_to_shadow_a_different_class():
    from espnet_ext.register import _add

    class A:
        pass

    class B:
        pass

    table = {"x": A}
    _add(table, "x", A, "t")  # same class again: fine (idempotent)
    with pytest.raises(RuntimeError, match="refusing to shadow"):
        _add(table, "x", B, "t")


def test_hooked_modules_keep_their_source_and_the_hook_imports_nothing_heavy():
    """The registering loader delegates get_source etc. (tracebacks and inspect show ESPnet's
    lines); importing espnet_ext (what espnet_ext.pth does at start-up) stays cheap."""
    code = (
        "import sys, espnet_ext\n"
        "print('importlib.abc' in sys.modules, 'torch' in sys.modules)\n"
        "import inspect, espnet2.tasks.abs_task as m\n"
        "print(type(m.__loader__).__name__, 'class AbsTask' in inspect.getsource(m))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.split("\n")
    assert lines[0] == "False False"
    assert lines[1] == "_RegisteringLoader True"
