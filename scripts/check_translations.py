"""
Fail when the Simplified Chinese edition of the guide is not complete.

Extracts the messages of the docs as they are now (``sphinx-build -b
gettext``) and checks, for each guide page, that its catalogue in
``docs/locales/zh_CN/LC_MESSAGES/`` translates every one of them: a message
that is missing (the English changed and the catalogue was not updated),
untranslated (empty ``msgstr``) or fuzzy fails the check, so the Chinese
edition cannot fall back to English without anyone noticing.  A translation
must also keep the message's cross-reference targets and inline literals
(``:ref:`...```, ````code````), or links and code would silently change.

Usage: python scripts/check_translations.py            (run by .ci/docs.sh; offline)
       python scripts/check_translations.py --update   (after changing the English)

``--update`` brings the guide pages' catalogues up to date with the English
text (``sphinx-intl update``, for those pages only: the others fall back to
English and have no catalogue); then translate the new and fuzzy entries
(and remove the ``fuzzy`` flags), and run the check.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter

from babel.messages.pofile import read_po

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
CATALOGUES = os.path.join(DOCS, "locales", "zh_CN", "LC_MESSAGES")

#: The pages the Chinese edition translates completely.
GUIDE = ("index", "quickstart", "sockets-to-twisted", "tcp-lifecycle", "tcp-vs-udp", "glossary")

# A role's target: :role:`target` or :role:`text <target>`.
_ROLE = re.compile(r":(\w+(?::\w+)?):`(?:[^`<]*<([^>`]+)>|([^`]+))`")
_LITERAL = re.compile(r"``(.+?)``")


def _targets(text: str) -> Counter[str]:
    """The cross-reference targets and inline literals a translation must keep."""
    found: Counter[str] = Counter()
    for role, explicit, plain in _ROLE.findall(text):
        if role == "term":  # a glossary term is named in the reader's language
            continue
        found[f":{role}:{(explicit or plain).lstrip('~!')}"] += 1
    for literal in _LITERAL.findall(text):
        found[f"``{literal}``"] += 1
    return found


def check(templates: str) -> list[str]:
    """The problems found, one line each."""
    problems: list[str] = []
    for page in GUIDE:
        with open(os.path.join(templates, page + ".pot"), "rb") as f:
            template = read_po(f)
        path = os.path.join(CATALOGUES, page + ".po")
        if not os.path.exists(path):
            problems.append(f"{page}: no catalogue {os.path.relpath(path, ROOT)}")
            continue
        with open(path, "rb") as f:
            catalogue = read_po(f, locale="zh_CN")
        for message in template:
            if not message.id:
                continue
            translated = catalogue.get(message.id)
            short = str(message.id).replace("\n", " ")[:70]
            if translated is None:
                problems.append(f"{page}: missing: {short!r}")
            elif translated.fuzzy:
                problems.append(f"{page}: fuzzy: {short!r}")
            elif not translated.string:
                problems.append(f"{page}: untranslated: {short!r}")
            else:
                lost = _targets(str(message.id)) - _targets(str(translated.string))
                if lost:
                    problems.append(f"{page}: translation drops {sorted(lost)}: {short!r}")
        problems.extend(
            f"{page}: fuzzy: {str(m.id)[:70]!r}"
            for m in catalogue
            if m.id and m.fuzzy and m.id not in template
        )
    return problems


def update(templates: str) -> int:
    """``sphinx-intl update`` the guide pages' catalogues from ``templates``."""
    guide = os.path.join(templates, "guide")
    os.mkdir(guide)
    for page in GUIDE:
        shutil.copy(os.path.join(templates, page + ".pot"), guide)
    from sphinx_intl import commands  # type: ignore[import-untyped]

    try:
        commands.main(
            ["update", "-p", guide, "-d", os.path.join(DOCS, "locales"), "-l", "zh_CN"],
            standalone_mode=False,
        )
    except Exception as e:  # click reports usage errors as exceptions here
        sys.stderr.write(f"check_translations.py: sphinx-intl update failed: {e}\n")
        return 1
    return 0


def main(argv: list[str]) -> int:
    if argv not in ([], ["--update"]):
        sys.stderr.write("usage: check_translations.py [--update]\n")
        return 2
    with tempfile.TemporaryDirectory() as templates:
        build = subprocess.run(
            [sys.executable, "-m", "sphinx", "-q", "-b", "gettext", DOCS, templates],
            capture_output=True,
            text=True,
        )
        if build.returncode != 0:
            sys.stderr.write(build.stdout + build.stderr)
            sys.stderr.write("check_translations.py: extracting the messages failed\n")
            return 1
        if argv == ["--update"] and update(templates) != 0:
            return 1
        problems = check(templates)
    if problems:
        sys.stderr.write("\n".join(problems) + "\n")
        sys.stderr.write(
            f"check_translations.py: the zh_CN guide is incomplete ({len(problems)} "
            "problems); see this script's docstring for how to update it\n"
        )
        return 1
    print(f"zh_CN: every message of {', '.join(GUIDE)} translated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
