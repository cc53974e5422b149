"""What a user of the installed package sees: the version and the module's own help."""

from __future__ import annotations

import importlib.metadata
import pydoc

import beluga_trio
import beluga_trio.llm
import beluga_trio.testing


def test_the_version_is_the_package_metadatas() -> None:
    assert beluga_trio.__version__ == importlib.metadata.version("beluga_trio")


def test_help_stands_on_its_own() -> None:
    # A wheel user has no docs/ directory: help() must not send them to one.
    for module in (beluga_trio, beluga_trio.llm, beluga_trio.testing):
        text = pydoc.plain(pydoc.render_doc(module))
        assert "docs/" not in text, module.__name__
    assert "async with" in (beluga_trio.__doc__ or "")
