"""Sphinx configuration of the beluga_trio documentation (``make docs``)."""

from importlib.metadata import version as _version
from typing import Any, cast

from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.domains.python import PythonDomain
from sphinx.environment import BuildEnvironment
from sphinx.util.nodes import make_refnode

project = "beluga_trio"
author = "beluga_trio developers"
copyright = "2026, beluga_trio developers"
release = version = _version("beluga_trio")

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinxcontrib_trio",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "examples"]

# Docstrings write `name` for a cross-reference, as trio's do.
default_role = "py:obj"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
# beluga_trio.llm.openai needs the optional `http` extra and beluga_trio.redis the `redis`
# extra; the docs build installs neither.
autodoc_mock_imports = ["httpx2", "coredis"]

myst_heading_anchors = 3

html_theme = "furo"
html_title = "beluga_trio"

# No intersphinx: the build must work offline (only package registries are reachable), so
# references to trio, attrs, httpx2 and the standard library cannot resolve; they are
# ignored by name below, and so are type variables and private helper types that appear in
# signatures. Everything of beluga_trio's own must resolve.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(trio|attrs|httpx2|starlette|hypercorn|coredis)(\..*)?"),
    (r"py:.*", r"(collections\.abc|contextlib|typing|enum|json|types)\..*"),
    (r"py:.*", r"(beluga_trio(\.\w+)*\.)?(T|T_co|U|A|R|P)"),  # type variables
    (r"py:.*", r"beluga_trio(\.\w+)*\._\w+(\.\w+)*"),  # private helpers in signatures
]
# Names in docstrings that are not documented objects: instance attributes set in
# ``__init__`` (ScriptedModel.calls, ScriptedProducer.runs), a private constant and the
# private alias of SweepRun.outcome.
nitpick_ignore = [
    ("py:obj", "calls"),
    ("py:obj", "runs"),
    ("py:obj", "SCHEDULE_EVERY"),
    ("py:class", "Outcome"),
]


def _resolve_short_name(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: Any
) -> Any:
    """Resolve ``Stream``, ``ModelError``... written in a docstring of another public module
    (``beluga_trio.llm.openai`` naming ``ModelError``) to the public object of that name."""
    if node.get("refdomain") != "py":
        return None
    target = str(node["reftarget"])
    objects = cast(PythonDomain, env.get_domain("py")).objects
    module, cls = node.get("py:module"), node.get("py:class")
    candidates = [f"{module}.{cls}.{target}"] if module and cls else []
    candidates += [f"{scope}.{target}" for scope in (module, *_PUBLIC_MODULES) if scope]
    for name in candidates:
        if name in objects:
            entry = objects[name]
            return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode)
    return None


_PUBLIC_MODULES = [
    "beluga_trio",
    "beluga_trio.llm",
    "beluga_trio.redis",
    "beluga_trio.schema",
    "beluga_trio.testing",
    "beluga_trio.web",
]


def setup(app: Sphinx) -> None:
    app.connect("missing-reference", _resolve_short_name)
