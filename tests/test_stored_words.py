"""S3, issue 11 item 5: nothing stores an English sentence for a page to show.

Failures are stored as the ERP's own words (verbatim evidence) plus our note, a code with
parameters worded when read (integrations/notes.py). These tests catch a sentence of
ours written into a stored text field, a note without Norwegian words, and a Norwegian
page that shows a stored failure in English.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.utils import translation

from accounting_sync.models import FinancialRecord, SyncLog
from integrations.notes import _WORDS, NoteCode, note, words
from tests.factories import make_records

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = [
    path
    for path in ROOT.rglob("*.py")
    if not {"tests", ".venv", "migrations", "bench", "erp_sandbox", "scripts"} & set(path.parts)
]
# Fields that keep the ERP's words (or a legacy sentence), never ours.
STORED = {"message", "last_error", "error_message"}
SENTENCE = re.compile(r"[A-Za-z]{2,} [a-z]{2,} [a-z]{2,}")


def _sentences(node: ast.expr) -> list[str]:
    """English words in a literal or an f-string's literal parts."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        parts = [node.value]
    elif isinstance(node, ast.JoinedStr):
        parts = [str(v.value) for v in node.values if isinstance(v, ast.Constant)]
    else:
        return []
    return [part for part in parts if SENTENCE.search(part)]


def _stored_sentences(source: str, name: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename=name)):
        values: list[ast.expr] = []
        if isinstance(node, ast.Call):
            values += [k.value for k in node.keywords if k.arg in STORED]
            called = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if called == "Failure" and len(node.args) >= 3:
                values.append(node.args[2])  # Failure(outcome, cause, message, ...)
        elif isinstance(node, ast.Assign) and any(
            getattr(target, "attr", None) in STORED for target in node.targets
        ):
            values.append(node.value)
        line = getattr(node, "lineno", 0)
        found += [f"{name}:{line}: {s!r}" for value in values for s in _sentences(value)]
    return found


def test_s3_no_sentence_of_ours_is_written_into_a_stored_message_field():
    found = [
        line
        for path in PRODUCT
        for line in _stored_sentences(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert not found, "Store a note (integrations/notes.py), not a sentence:\n" + "\n".join(found)


def test_s3_the_check_above_catches_an_english_sentence():
    planted = (
        'record.last_error = "The sync was interrupted before sending it."\n'
        'PostResult(ref, outcome, message=f"Could not reach {host} in time.")\n'
        'Failure(outcome, cause, "The server refused the request.")\n'
        "PostResult(ref, outcome, message=erp_words)\n"
    )
    assert len(_stored_sentences(planted, "planted.py")) == 3  # the ERP's words pass


@pytest.mark.parametrize("code", list(NoteCode))
def test_s3_every_note_has_norwegian_words(code):
    params = {"host": "h", "erp": "Xledger", "credential": "api_token", "reason": "r"}
    with translation.override("en"):
        english = str(_WORDS[code])
    with translation.override("nb"):
        norwegian = str(_WORDS[code])
    assert norwegian != english, f"{code}: no Norwegian words in locale/nb"
    with translation.override("nb"):
        assert words(note(code, **params).stored())  # worded without a missing parameter


@pytest.mark.django_db
def test_s3_a_norwegian_failed_records_page_shows_stored_failures_in_norwegian(org, admin_client):
    records = make_records(org, 2)
    cases = [
        (note(NoteCode.READ_TIMEOUT), ""),
        (note(NoteCode.BC_JOURNAL_MISSING, journal="UTLEGG"), "Account '7130' does not exist"),
    ]
    for record, (said, erp_words) in zip(records, cases, strict=True):
        FinancialRecord.objects.filter(pk=record.pk).update(
            state=FinancialRecord.State.FAILED, last_note=said.stored(), last_error=erp_words
        )
    page = admin_client.get(f"/orgs/{org.slug}/failed/", HTTP_ACCEPT_LANGUAGE="nb")
    page = page.content.decode()
    assert "Det kom ikke svar i tide etter at forespørselen ble sendt." in page
    assert "Kladden UTLEGG finnes ikke" in page
    assert "Account &#x27;7130&#x27; does not exist" in page  # the ERP's words, verbatim
    assert "No answer came in time" not in page
    assert "does not exist under the default" not in page


def test_s3_an_attempts_note_is_part_of_its_hash_only_when_set():
    bare = SyncLog(reference="VH-1-1", note=None)
    noted = SyncLog(reference="VH-1-1", note=note(NoteCode.READ_TIMEOUT).stored())
    assert "note" not in bare.chain_content()  # rows written before notes verify as written
    assert noted.chain_content()["note"] == {"code": "read_timeout", "params": {}}
