"""A command whose optional dependency is missing says which extra to
install (exit 2), instead of an internal error."""
from __future__ import annotations

import pytest

from seqdsl.cli import app as cli, commands


def _missing(name):
    def handler(args):
        raise ModuleNotFoundError(f"No module named '{name}'", name=name)
    return handler


@pytest.mark.parametrize("module, extra", [("torch", "torch"), ("torch._dynamo", "torch"),
                                           ("matplotlib", "plot"), ("onnxscript", "onnx")])
def test_missing_optional_package_names_the_extra(monkeypatch, capsys, module, extra):
    monkeypatch.setitem(commands.COMMANDS, "verify", _missing(module))
    code = cli.main(["verify", "specs/lstm_lm.seq"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and f"pip install 'seqdsl[{extra}]'" in err and "seqdsl verify" in err


def test_another_missing_module_is_an_internal_error(monkeypatch, capsys):
    monkeypatch.setitem(commands.COMMANDS, "verify", _missing("nosuchpkg"))
    monkeypatch.delenv("SEQDSL_DEBUG", raising=False)
    assert cli.main(["verify", "specs/lstm_lm.seq"]) == 3
    assert "internal error" in capsys.readouterr().err
