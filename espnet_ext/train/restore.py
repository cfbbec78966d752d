"""Restoring a memory-mapped step checkpoint without keeping the file's pages: tensors are
copied into memory the training owns, one at a time, and the mapped pages released."""

from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import torch

from espnet_ext.train.async_writer import release_file_pages


def tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from tensors(v)


def owned(obj: Any) -> Any:
    """``obj`` with its tensors cloned: nothing keeps a memory-mapped file alive."""
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, dict):
        return {k: owned(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(owned(v) for v in obj) if isinstance(obj, list) else tuple(owned(v) for v in obj)
    return obj


def materialize_optimizer_state(
    optimizer: torch.optim.Optimizer, saved: Dict[str, Any], path: Optional[Path] = None
) -> None:
    """Replace the tensors of a loaded optimizer ``saved`` state dict by copies on their
    parameter's device and dtype (what ``Optimizer.load_state_dict`` would make; it then
    keeps them as they are), one at a time, releasing each memory-mapped source's pages
    of ``path``. On CPU ``load_state_dict`` would otherwise keep the mapped tensors
    themselves, pinning the (possibly later deleted) file."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    ids = [i for group in saved.get("param_groups", []) for i in group["params"]]
    by_id = dict(zip(ids, params)) if len(ids) == len(params) else {}
    for index, entry in saved.get("state", {}).items():
        param = by_id.get(index)
        for key, value in list(entry.items()):
            if not isinstance(value, torch.Tensor):
                continue
            if param is None or key == "step":
                entry[key] = value.clone()
            elif param.is_floating_point():
                entry[key] = value.to(device=param.device, dtype=param.dtype, copy=True)
            else:
                entry[key] = value.to(device=param.device, copy=True)
            if path is not None:
                release_file_pages([value], path)
            del value
