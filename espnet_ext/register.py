"""The one place where espnet_ext's plugins are registered into ESPnet's own class choices.

ESPnet has no entry-point plugin mechanism: its choices are module-level objects
(``ClassChoices`` in ``espnet2.tasks.<task>``, the ``scheduler_classes`` dict in
``espnet2.tasks.abs_task``). Adding a key there before a task builds its argument parser
makes ``--encoder ssl_conformer`` etc. valid for ESPnet's own trainer, inference and packing.

``import espnet_ext`` calls :func:`install`. Importing ``espnet2.tasks.asr`` costs several
seconds, and the data and feature tools of this package never need it, so registration is
tied to ESPnet's task modules themselves: a module that is already imported is registered
into at once; one imported later is registered into right after it executes (an import
hook on exactly these three module names). Either way, by the time any code can read
``espnet2.tasks.ssl.loss_choices`` the plugins are in it. :func:`register` does everything
eagerly, for callers that want that explicitly.

Installing the package also installs ``espnet_ext.pth`` (see :mod:`espnet_ext._startup`),
which calls :func:`install` at interpreter start-up: stock ESPnet entry points
(``python -m espnet2.bin.asr_inference``, ``Speech2Text.from_pretrained``...) see the plugins
with no ``import espnet_ext``. That is why this module imports nothing at its top but ``sys``
(no ``importlib.abc``, no ``typing``: they cost tens of milliseconds, in every process): the
plugins, torch and ESPnet are imported only when an ESPnet task module is.
"""

from __future__ import annotations

import sys
from types import ModuleType


def _add(table: dict, name: str, cls: type, where: str) -> None:
    current = table.get(name)
    if current is not None and current is not cls and current.__qualname__ != cls.__qualname__:
        raise RuntimeError(
            f"espnet_ext: {where} already has '{name}' -> {current.__module__}."
            f"{current.__qualname__}; refusing to shadow it with {cls.__module__}.{cls.__qualname__}"
        )
    table[name] = cls


def _register_abs_task(module: ModuleType) -> None:
    from espnet_ext.schedulers.warmup_cosine_lr import WarmupCosineLR

    _add(module.scheduler_classes, "warmupcosinelr", WarmupCosineLR, "scheduler_classes")


def _register_frontend_encoder(module: ModuleType, task: str) -> None:
    """The frontend and encoder, shared by the ASR and SSL tasks."""
    from espnet_ext.frontend import LogMelFrontend
    from espnet_ext.nets.ssl_conformer import SSLConformerEncoder

    _add(module.frontend_choices.classes, "logmel", LogMelFrontend, f"{task} frontend_choices")
    _add(module.encoder_choices.classes, "ssl_conformer", SSLConformerEncoder, f"{task} encoder_choices")


def _register_asr(module: ModuleType) -> None:
    from espnet_ext.preprocess.waveform_aug import WaveformAugPreprocessor

    _register_frontend_encoder(module, "asr")
    _add(
        module.preprocessor_choices.classes,
        "waveform_aug",
        WaveformAugPreprocessor,
        "asr preprocessor_choices",
    )


def _register_ssl(module: ModuleType) -> None:
    from espnet_ext.ssl.best_rq import BestRQLoss
    from espnet_ext.ssl.masking import BestRQMasking

    _register_frontend_encoder(module, "ssl")
    _add(module.loss_choices.classes, "best_rq", BestRQLoss, "ssl loss_choices")
    # ESPnetSSLModel.encode applies util_modules["block_mask"] to the encoder input when a
    # loss asks for it: the BEST-RQ input-frame masking is that util.
    _add(module.util_choices.classes, "block_mask", BestRQMasking, "ssl util_choices")


_TARGETS: dict = {  # module name -> its registration
    "espnet2.tasks.abs_task": _register_abs_task,
    "espnet2.tasks.asr": _register_asr,
    "espnet2.tasks.ssl": _register_ssl,
}


class _RegisteringLoader:
    """Delegates to the real loader, then registers into the freshly executed module.

    (The protocol of ``importlib.abc.Loader``, without importing it.)"""

    def __init__(self, loader, hook):
        self._loader = loader
        self._hook = hook

    def __getattr__(self, name):  # get_source, get_code, is_package...: tracebacks, inspect
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._hook(module)


class _Finder:
    """A ``sys.meta_path`` finder (the protocol of ``importlib.abc.MetaPathFinder``)."""

    def find_spec(self, fullname, path, target=None):
        hook = _TARGETS.get(fullname)
        if hook is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisteringLoader(spec.loader, hook)
                return spec
        return None


_finder = _Finder()


def install() -> None:
    """Register into the ESPnet task modules imported so far, and into the others on import."""
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    for name, hook in _TARGETS.items():
        module = sys.modules.get(name)
        if module is not None:
            hook(module)


def register() -> None:
    """Import ESPnet's task modules now and register every plugin (idempotent)."""
    import importlib

    install()
    for name in _TARGETS:
        importlib.import_module(name)
