"""Sphinx configuration of hostguard's documentation (`make docs`).

Pages are Markdown (MyST). `make docs` and `make test` build with -W -n: a broken
reference between pages, a missing anchor or image, or a page left out of every
table of contents fails the build.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Read, not imported: importing hostguard would need Django settings.
(release,) = re.findall(r'^__version__ = "([^"]+)"', (ROOT / "hostguard" / "__init__.py").read_text(), re.M)
version = release

project = "hostguard"
author = "hostguard authors"
project_copyright = "hostguard authors"

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
# Every heading down to ### gets an anchor, so pages link to one setting or check
# (settings.md#hostguard_deployment) and a wrong anchor is a warning, hence an error.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist", "substitution"]
myst_substitutions = {"release": release}
nitpicky = True

html_theme = "furo"
html_title = f"hostguard {release}"
html_show_sourcelink = False
html_copy_source = False
