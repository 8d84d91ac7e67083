"""
Sphinx configuration for the man pages: the HTML docs' own configuration
(``docs/conf.py``, run unchanged) plus ``man_pages``.

Build them with ``sphinx-build -b man -c docs/man docs docs/_build/man`` (as
``.ci/man.sh`` does): the source directory is ``docs/``, so each man page is
made from the very page the HTML docs show, never from a second copy.
"""

import os

_docs = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_cwd = os.getcwd()
os.chdir(_docs)  # docs/conf.py resolves its paths from docs/
try:
    with open(os.path.join(_docs, "conf.py"), encoding="utf-8") as _f:
        exec(compile(_f.read(), os.path.join(_docs, "conf.py"), "exec"))
finally:
    os.chdir(_cwd)

# The HTML build leaves docs/man/ out (exclude_patterns); this build reads the
# client's page from it.
exclude_patterns = [p for p in exclude_patterns if p != "man"]  # noqa: F821

# (source page, name, description, authors, section)
man_pages = [
    (
        "operating",
        "twistd-tcpecho",
        "RFC 862 echo and 'thank you' TCP servers (twistd tcpecho)",
        ["the tcpproto developers"],
        1,
    ),
    (
        "man/tcpecho-client",
        "tcpecho-client",
        "send standard input to a TCP server and write back what it answers",
        ["the tcpproto developers"],
        1,
    ),
]
man_show_urls = False


# docutils 0.22 binds its own visit_reference/depart_reference to each man page
# translator instance, hiding Sphinx's, and dropped the "reference" markup
# Sphinx 9's method uses (an upstream incompatibility of Sphinx 9.0 with
# docutils 0.22): every cross-reference came out as "Observability <>" or
# crashed.  This translator prints a reference as its text, as a man page
# should, with nothing after it.
from docutils import nodes  # noqa: E402
from sphinx.writers.manpage import ManualPageTranslator  # noqa: E402


class _ManualPageTranslator(ManualPageTranslator):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        for name in ("visit_reference", "depart_reference"):
            self.__dict__.pop(name, None)

    def visit_reference(self, node: nodes.reference) -> None:
        self.visit_Text(node)  # type: ignore[arg-type]
        raise nodes.SkipNode


_htmlSetup = globals().get("setup")  # noqa: N816 (docs/conf.py's, if it has one)


def setup(app):  # type: ignore[no-untyped-def]
    if _htmlSetup is not None:
        _htmlSetup(app)
    app.set_translator("man", _ManualPageTranslator, override=True)
