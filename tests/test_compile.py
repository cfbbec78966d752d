"""--torch_compile (espnet_ext.train.compile): in-place compilation of the training forward."""

import argparse

import pytest
import torch

from espnet_ext.train.compile import add_compile_arguments, maybe_compile


class _Model(torch.nn.Module):
    """Stands in for an ESPnet model: encoder, util_modules, losses."""

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(4, 4)
        self.util_modules = torch.nn.ModuleDict({"block_mask": torch.nn.Identity()})
        self.losses = torch.nn.ModuleList([torch.nn.Linear(4, 2)])
        self.head = torch.nn.Linear(2, 1)

    def forward(self, x):
        return self.head(self.losses[0](self.util_modules["block_mask"](self.encoder(x))))


def test_arguments_and_none_is_a_no_op():
    parser = argparse.ArgumentParser()
    add_compile_arguments(parser)
    args = parser.parse_args([])
    assert args.torch_compile == "none" and args.torch_compile_backend == "inductor"
    with pytest.raises(SystemExit):
        parser.parse_args(["--torch_compile", "fast"])
    model = _Model()
    assert maybe_compile(model, "none") == [] and maybe_compile(model, None) == []
    with pytest.raises(ValueError, match="torch_compile"):
        maybe_compile(model, "fast")


def test_compiles_in_place_keeping_state_dict_and_outputs():
    torch.manual_seed(0)
    model = _Model()
    keys = list(model.state_dict())
    params = list(model.parameters())
    x = torch.randn(3, 4)
    ref = model(x)
    names = maybe_compile(model, "default", backend="eager")
    assert names == ["encoder", "util_modules.block_mask", "losses.0"]
    assert list(model.state_dict()) == keys
    assert all(a is b for a, b in zip(model.parameters(), params))
    torch.testing.assert_close(model(x), ref)
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    torch._dynamo.reset()
