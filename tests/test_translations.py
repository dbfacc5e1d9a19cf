"""The Norwegian catalog is complete, compiled, and the templates leave no text untranslated.

A Norwegian reader notices each of these at once: an empty or fuzzy entry shows English (or,
for a fuzzy one, a guess made by msgmerge from a similar string), and a stale .mo shows last
week's words. The .po and the .mo are both committed because `make run` needs only Python;
this checks them with GNU gettext (msgfmt, msgattrib), which `make messages` needs anyway.
"""

from __future__ import annotations

import gettext
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

CATALOG = Path(settings.BASE_DIR) / "locale" / "nb" / "LC_MESSAGES"
PO, MO = CATALOG / "django.po", CATALOG / "django.mo"
TEMPLATES = Path(settings.BASE_DIR) / "templates"


def gettext_tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} (GNU gettext) is needed to check the catalog: apt-get install gettext"
    return path


def msgids(po_text: str) -> list[str]:
    """The msgids of a .po text (joined over continuation lines), without the header."""
    found = []
    for match in re.finditer(r'^msgid ((?:".*"\n)+)', po_text, flags=re.MULTILINE):
        text = "".join(re.findall(r'"(.*)"', match.group(1)))
        if text:
            found.append(text)
    return found


def entries_flagged(option: str) -> list[str]:
    result = subprocess.run(
        [gettext_tool("msgattrib"), option, "--no-obsolete", str(PO)],
        capture_output=True,
        text=True,
        check=True,
    )
    return msgids(result.stdout)


def test_every_message_has_a_norwegian_translation() -> None:
    assert entries_flagged("--untranslated") == []


def test_no_translation_is_fuzzy() -> None:
    # A fuzzy entry is a guess by msgmerge; Django does not use it, so English shows.
    assert entries_flagged("--only-fuzzy") == []


def test_the_translations_keep_every_placeholder() -> None:
    # msgfmt --check compares the %(name)s placeholders of each msgid and msgstr.
    result = subprocess.run(
        [gettext_tool("msgfmt"), "--check", "-o", "/dev/null", str(PO)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_the_committed_mo_is_compiled_from_the_current_po(tmp_path) -> None:
    fresh = tmp_path / "django.mo"
    subprocess.run([gettext_tool("msgfmt"), "-o", str(fresh), str(PO)], check=True)
    with fresh.open("rb") as expected, MO.open("rb") as committed:
        # The catalogs, not the bytes: another msgfmt version may lay the file out otherwise.
        # _catalog is CPython's own attribute; typeshed leaves it out.
        assert gettext.GNUTranslations(committed)._catalog == (  # type: ignore[attr-defined]
            gettext.GNUTranslations(expected)._catalog  # type: ignore[attr-defined]
        ), "run `make messages` and commit locale/ (the .po and the .mo)"


# What `make messages` reads: the application's sources.
SOURCES = ("accounting_sync", "alerts", "audit", "config", "integrations", "templates")


def test_the_catalog_has_every_message_the_code_marks(tmp_path, monkeypatch) -> None:
    """A string marked for translation after the last `make messages` would show in English.

    makemessages writes into the catalog next to the sources it reads, so it runs in a
    scratch tree that links to them, never on the committed catalog.
    """
    from django.core.management import call_command
    from django.test import override_settings

    for name in SOURCES:
        (tmp_path / name).symlink_to(Path(settings.BASE_DIR) / name, target_is_directory=True)
    scratch = tmp_path / "locale" / "nb" / "LC_MESSAGES"
    scratch.mkdir(parents=True)
    shutil.copy(PO, scratch / "django.po")
    monkeypatch.chdir(tmp_path)
    with override_settings(LOCALE_PATHS=[tmp_path / "locale"]):
        call_command("makemessages", locale=["nb"], symlinks=True, no_obsolete=True, verbosity=0)
    marked = set(msgids((scratch / "django.po").read_text()))
    missing = sorted(marked - set(msgids(PO.read_text())))
    assert not missing, f"run `make messages` and translate: {missing[:10]}"


# --- templates: text a reader sees is inside translation tags ------------------------------------

# Words that are the same in both languages: names and codes.
SAME_IN_EVERY_LANGUAGE = {"Voluntary Ledger", "CSV", "JSON", "API", "Xledger", "ID"}
BLOCKS = re.compile(
    r"{%\s*blocktrans(?:late)?\b.*?{%\s*endblocktrans(?:late)?\s*%}"  # translated as a whole
    r"|{%\s*comment\s*%}.*?{%\s*endcomment\s*%}"
    r"|<script\b.*?</script>|<style\b.*?</style>|<!--.*?-->"
    r"|<code\b.*?</code>",  # code samples stay as they are
    flags=re.DOTALL,
)
TAGS = re.compile(r"{%.*?%}|{{.*?}}|{#.*?#}", flags=re.DOTALL)
READ_ATTRIBUTES = re.compile(r'\b(?:aria-label|title|placeholder|alt)="([^"]*)"')
WORD = re.compile(r"[^\W\d_]{2,}")
# Around a name, punctuation and separators (middle dot, guillemet, dashes) say nothing.
SEPARATORS = " :,.()-\u00b7\u203a\u2013\u2014"


def untranslated_text(source: str) -> list[str]:
    """Text outside translation tags that contains a word: a heuristic, not a parser."""
    text = BLOCKS.sub(" ", source)
    # Translation tags inside attributes go first, then every other tag.
    text = TAGS.sub(" ", text)
    found = [value for value in READ_ATTRIBUTES.findall(text) if WORD.search(value)]
    for chunk in re.split(r"<[^>]*>", text):
        chunk = " ".join(chunk.split()).strip(SEPARATORS)
        if WORD.search(chunk) and chunk not in SAME_IN_EVERY_LANGUAGE:
            found.append(chunk)
    return found


TEMPLATE_FILES = sorted(TEMPLATES.rglob("*.html"))


@pytest.mark.parametrize(
    "template", TEMPLATE_FILES, ids=[str(t.relative_to(TEMPLATES)) for t in TEMPLATE_FILES]
)
def test_a_templates_text_is_inside_translation_tags(template: Path) -> None:
    assert untranslated_text(template.read_text()) == []


def test_the_template_check_finds_text_outside_translation_tags() -> None:
    assert untranslated_text("<h1>Sync history</h1>") == ["Sync history"]
    assert untranslated_text('<nav aria-label="Pages"></nav>') == ["Pages"]
    assert untranslated_text('<h1>{% translate "Sync history" %}</h1>') == []
    assert untranslated_text("<p>{% blocktranslate %}{{ n }} sent{% endblocktranslate %}</p>") == []
    assert untranslated_text("<td>{{ record.amount }} · 3</td>") == []
