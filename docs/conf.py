"""Sphinx configuration of the jaxinit documentation (MyST Markdown pages, autodoc API)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

# The pages' examples and the API reference import the package from this checkout.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Importing jax must not look for accelerators while the site is built.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jaxinit  # noqa: E402

project = "jaxinit"
author = "The jaxinit authors"
copyright = "The jaxinit authors"  # noqa: A001
release = jaxinit.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: $...$ and $$...$$ math, ::: fences, and anchors for headings (links like page.md#section).
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# API reference: Google-style docstrings (Args:/Returns:/Example:) through napoleon.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_inherit_docstrings = False
autodoc_type_aliases = {"DTypeLike": "jax.typing.DTypeLike", "ArrayLike": "jax.typing.ArrayLike"}
python_maximum_signature_line_length = 90

# No intersphinx: the build reads nothing from the network.

html_theme = "furo"
html_title = f"jaxinit {release}"
html_static_path: list[str] = []


# --------------------------------------------------------------------------- autodoc tweaks
# Re-exported names are documented as ``jaxinit.NAME``. Two kinds need help:
#
# * values documented by a ``#:`` comment where they are defined (``zeros``, ``ones``,
#   ``GATE_ORDERS``): autodoc looks for the comment in ``jaxinit/__init__.py`` only, and
#   falls back to the docstring of the value's type; the defining module's comment is used;
# * aliases (``xavier_uniform is glorot_uniform``): the docstring is replaced by a link to
#   the documented original, so that it is not printed twice.


def _doc_comment(name: str, obj: object) -> list[str] | None:
    from sphinx.pycode import ModuleAnalyzer

    for modname, module in sorted(sys.modules.items()):
        if not modname.startswith("jaxinit.") or getattr(module, name, None) is not obj:
            continue
        try:
            comments = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except Exception:  # noqa: BLE001 - a module without source has no comments
            continue
        if ("", name) in comments:
            return list(comments[("", name)])
    return None


def _process_docstring(app, what, name, obj, options, lines):  # noqa: ARG001
    if not name.startswith("jaxinit.") or name.count(".") != 1:
        return
    short = name.split(".", 1)[1]
    original = getattr(obj, "__name__", short)
    if what == "function" and original != short and original in jaxinit.__all__:
        lines[:] = [f"Alias of :func:`jaxinit.{original}` (the same function).", ""]
        return
    comment = _doc_comment(short, obj)
    if comment is not None:
        lines[:] = comment


def _process_signature(app, what, name, obj, options, signature, return_annotation):  # noqa: ARG001
    # Some Sphinx releases print an aliased type inside a union as TypeAliasForwardRef('x').
    def clean(text: str | None) -> str | None:
        return None if text is None else re.sub(r"TypeAliasForwardRef\('([^']*)'\)", r"\1", text)

    return clean(signature), clean(return_annotation)


def setup(app):
    app.connect("autodoc-process-docstring", _process_docstring)
    app.connect("autodoc-process-signature", _process_signature)
