"""The examples in the docstrings run (the ones marked ``+SKIP`` train a network)."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["config", "data", "metrics", "recipe"])
def test_docstring_examples_run(module):
    mod = importlib.import_module(f"napari_mrepinn.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module} has no examples"
    assert result.failed == 0
