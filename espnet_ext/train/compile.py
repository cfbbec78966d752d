"""``--torch_compile``: compile the training forward with ``torch.compile``.

The encoder, the SSL utils (masking) and the SSL losses run without host syncs
(no ``.item()``, no data-dependent shapes; ``tests/test_ssl_conformer.py::
test_encoder_and_loss_compile_without_graph_breaks``), so each compiles into one
graph. :func:`maybe_compile` compiles those submodules *in place*
(``nn.Module.compile``): the module tree, the parameter objects and the
state-dict keys stay as they are (no ``_orig_mod.`` prefix), so checkpoints,
optimizers, DDP wrapping and ``init_param`` work unchanged. Call it on the
built model before it is wrapped in DDP.

Modes are ``torch.compile``'s: ``default``, ``reduce-overhead`` (CUDA graphs),
``max-autotune``; ``none`` (the default) leaves the model eager. Shapes vary
from batch to batch, so the first batches recompile until dynamo marks the time
dimension dynamic (``dynamic=None``, torch's default).
"""

import argparse
import logging
from typing import List, Optional

import torch

logger = logging.getLogger(__name__)

COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
# Submodules of ESPnet's SSL and ASR models that are compiled, by attribute name.
_TARGETS = ("encoder", "util_modules", "losses")


def add_compile_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--torch_compile`` and ``--torch_compile_backend`` to ``parser``."""
    group = parser.add_argument_group("torch.compile")
    group.add_argument(
        "--torch_compile",
        choices=COMPILE_MODES,
        default="none",
        help="Compile the encoder, SSL utils and losses with torch.compile in this mode ('none': eager)",
    )
    group.add_argument(
        "--torch_compile_backend",
        default="inductor",
        help="torch.compile backend (inductor needs a C++ compiler on CPU; "
        "'aot_eager' and 'eager' are for debugging)",
    )


def _compile_one(module: torch.nn.Module, mode: str, backend: str) -> None:
    kwargs = {"backend": backend}
    if backend == "inductor":
        kwargs["mode"] = mode
    module.compile(**kwargs)


def maybe_compile(model: torch.nn.Module, mode: Optional[str], backend: str = "inductor") -> List[str]:
    """Compile the training forward's submodules of ``model`` in place.

    Args:
        model: an ESPnet model (``ESPnetSSLModel``, ``ESPnetASRModel``, ...) or
            any module; a model without ``encoder``/``util_modules``/``losses``
            is compiled as a whole.
        mode: one of :data:`COMPILE_MODES`; ``None`` or ``"none"`` does nothing.
        backend: ``torch.compile`` backend; ``mode`` applies to inductor only.

    Returns:
        Names of the compiled submodules (``[]`` for ``none``).

    Raises:
        ValueError: on an unknown mode.
    """
    if mode is None or mode == "none":
        return []
    if mode not in COMPILE_MODES:
        raise ValueError(f"--torch_compile must be one of {COMPILE_MODES}, got {mode!r}")
    compiled = []
    for name in _TARGETS:
        sub = getattr(model, name, None)
        if sub is None:
            continue
        if isinstance(sub, (torch.nn.ModuleList, torch.nn.ModuleDict)):
            items = sub.items() if isinstance(sub, torch.nn.ModuleDict) else enumerate(sub)
            for key, child in items:
                _compile_one(child, mode, backend)
                compiled.append(f"{name}.{key}")
        elif isinstance(sub, torch.nn.Module):
            _compile_one(sub, mode, backend)
            compiled.append(name)
    if not compiled:
        _compile_one(model, mode, backend)
        compiled.append("<model>")
    logger.info("torch.compile (mode=%s, backend=%s): %s", mode, backend, ", ".join(compiled))
    return compiled
