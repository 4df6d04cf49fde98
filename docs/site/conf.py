"""Sphinx's settings for the course's site; `python -m course site` copies this file beside the pages it writes.

Everything the pages load is in the site itself: the theme's files, and MathJax from a wheel
(`course.staff.site.write_sources` puts it in `_static/mathjax/`).
"""

from course.staff.notebooks import settings

_course = settings()  # [tool.course] of pyproject.toml: a fork's site points at the fork
_owner, _name = _course["repository"].split("/")

project = "Make You Dangerous"
author = "the course's staff"
copyright = "the course's staff"  # noqa: A001 (Sphinx's name)
html_title = "Make You Dangerous"
html_baseurl = f"https://{_owner.lower()}.github.io/{_name}/"

extensions = ["myst_parser", "sphinx.ext.mathjax", "sphinx_design"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]

# MyST: $maths$, ::: blocks (the cards), and GitHub's anchors for headings (docs/ link to them).
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "attrs_inline"]
myst_heading_anchors = 3

# MathJax 3, served from the site (relative paths are under _static/).
mathjax_path = "mathjax/tex-chtml.js"
mathjax3_config = {"options": {"enableMenu": False}}

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_favicon = "_static/favicon.svg"  # else every browser asks for /favicon.ico, which is not there
# The theme's light/dark switch starts from the reader's own setting (empty, it logs an error).
html_context = {"default_mode": "auto"}
html_last_updated_fmt = None
html_show_sphinx = False
html_theme_options = {
    "repository_url": f"https://github.com/{_course['repository']}",
    "repository_branch": _course["branch"],
    "use_repository_button": True,
    "use_download_button": False,
    "show_toc_level": 2,
    "home_page_in_toc": True,
}
pygments_style = "default"
