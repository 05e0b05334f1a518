"""The documentation site: its code runs, and its API reference names every public name.

Every ``python`` block of ``docs/*.md`` runs as pasted, on its own (8 fake CPU devices, as
the root conftest sets), so an example that no longer works fails here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import jaxinit

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)
BLOCKS = [(page.name, i, code) for page in PAGES
          for i, code in enumerate(FENCE.findall(page.read_text()))]

# A public name is documented by an autodoc directive naming it, e.g.
# ``.. autofunction:: jaxinit.he_normal`` or ``.. automodule:: jaxinit.testing``.
AUTODOC = re.compile(
    r"^\s*\.\. auto(?:function|class|data|exception|module|attribute)::\s+jaxinit\.(\w+)\s*$",
    flags=re.M,
)


def _documented() -> list[str]:
    return [name for page in PAGES for name in AUTODOC.findall(page.read_text())]


def test_every_page_has_python_blocks_that_run():
    pages_with_code = {page for page, _, _ in BLOCKS}
    for page in ("index.md", "catalogue.md", "coming_from.md", "sharding.md",
                 "diagnostics.md", "papers.md"):
        assert page in pages_with_code, page


@pytest.mark.parametrize(("page", "index", "code"), BLOCKS,
                         ids=[f"{page}-{i}" for page, i, _ in BLOCKS])
def test_docs_block_runs_as_pasted(page, index, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # blocks that write files write them here
    environment = dict(os.environ)  # a block may set XLA_FLAGS, as a user would
    try:
        exec(compile(code, f"docs/{page} python block {index}", "exec"), {})
    finally:
        os.environ.clear()
        os.environ.update(environment)


def test_code_lines_fit_the_page_width():
    # Wider lines scroll sideways in the theme's code boxes.
    fence = re.compile(r"^```\w+\n(.*?)^```", flags=re.S | re.M)
    long = [(page.name, line) for page in PAGES for code in fence.findall(page.read_text())
            for line in code.splitlines() if len(line) > 88]
    assert not long, long


def test_the_api_reference_documents_every_public_name():
    missing = sorted(set(jaxinit.__all__) - set(_documented()))
    assert not missing, f"add to docs/api.md, one line each: {missing}"


def test_the_api_reference_documents_only_public_names_once():
    documented = _documented()
    assert len(documented) == len(set(documented)), "a name is documented twice"
    unknown = sorted(set(documented) - set(jaxinit.__all__))
    assert not unknown, f"not in jaxinit.__all__: {unknown}"


def test_the_autodoc_pattern_finds_a_directive():
    # The check above is only as good as the pattern: it must see a real directive line
    # and must not see a directive for another package.
    assert AUTODOC.findall(".. autofunction:: jaxinit.he_normal\n") == ["he_normal"]
    assert AUTODOC.findall(".. automodule:: jaxinit.testing\n   :members:\n") == ["testing"]
    assert AUTODOC.findall(".. autofunction:: jax.nn.initializers.he_normal\n") == []
