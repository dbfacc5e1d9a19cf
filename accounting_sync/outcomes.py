"""A sync run's outcome in words: the one place that words it, at display time.

A run stores what happened as codes and numbers (its counters, `skip_reasons`,
`detail_code` with `detail_params`), never as a sentence, so each reader gets the words in
their own language: the history page, the dashboard's and the failed-records page's
announcements, and the alerts all word a run here. The ERP's own words (the
credentials refusal) travel as a parameter and are shown verbatim: they are evidence.

Runs stored before the codes carry an English `message` and `skip_reasons` as
{sentence: count}; those are shown as they were stored (see `outcome_text`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.db import models
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from integrations.models import CategoryLabels

if TYPE_CHECKING:
    from accounting_sync.models import SyncRun


class RunDetail(models.TextChoices):
    """Why a run ended as it did, beyond its counts (`SyncRun.detail_code`)."""

    NOTHING_TO_SEND = "nothing_to_send", _("Nothing to send")
    CONNECTOR_DISABLED = "connector_disabled", _("Connector disabled")
    # detail_params: {"left": records not sent, back to pending}
    DISABLED_DURING_RUN = "disabled_during_run", _("Connector disabled during the sync")
    CLOSED_BY_SWEEP = "closed_by_sweep", _("Closed as stopped")
    # detail_params: {"error": the ERP's own words}
    CREDENTIALS_REFUSED = "credentials_refused", _("Credentials refused")
    ABANDONED = "abandoned", _("Worker stopped")
    UNEXPECTED_ERROR = "unexpected_error", _("Unexpected error")


class SkipReason(models.TextChoices):
    """Why a record was skipped (`FinancialRecord.skip_reason`, `SyncRun.skip_reasons`)."""

    NO_MAPPING = "no_mapping", _("No mapping for the category")
    NO_PAYABLE_ACCOUNT = "no_payable_account", _("No payable account chosen")


# Details that say all there is: counts beside them would only say "0 sent".
WHOLE_STORY = {RunDetail.NOTHING_TO_SEND, RunDetail.CONNECTOR_DISABLED}


def outcome_text(run: SyncRun) -> str:
    """What a finished run did, in the reader's language: its counts, then why it stopped.

    A run stored before the codes shows the English sentence it stored (never rewritten:
    its text may hold the ERP's words, which cannot be told apart from ours reliably).
    """
    if run.message and not run.detail_code:
        return run.message
    if run.is_running:
        return ""
    detail = _detail(run.detail_code, run.detail_params or {})
    if run.detail_code in WHOLE_STORY:
        return detail
    counted = any((run.sent, run.failed, run.skipped, run.import_posted, run.import_refused))
    if detail and not counted:
        return detail
    return " ".join(part for part in (_counts(run), detail) if part)


def _counts(run: SyncRun) -> str:
    # Each ngettext is called with its literal words: makemessages only finds those.
    parts = [ngettext("%(count)d sent", "%(count)d sent", run.sent) % {"count": run.sent}]
    if run.failed:
        parts.append(
            ngettext("%(count)d failed", "%(count)d failed", run.failed) % {"count": run.failed}
        )
    if run.skipped:
        parts.append(
            ngettext("%(count)d skipped", "%(count)d skipped", run.skipped) % {"count": run.skipped}
        )
    if run.import_posted:
        parts.append(
            ngettext(
                "%(count)d posted by the accounting system's import",
                "%(count)d posted by the accounting system's import",
                run.import_posted,
            )
            % {"count": run.import_posted}
        )
    if run.import_refused:
        parts.append(
            ngettext(
                "%(count)d refused by its import",
                "%(count)d refused by its import",
                run.import_refused,
            )
            % {"count": run.import_refused}
        )
    return ", ".join(parts) + "."


def _detail(code: str, params: Mapping[str, Any]) -> str:
    if not code:
        return ""
    if code == RunDetail.NOTHING_TO_SEND:
        return gettext("There was nothing to send.")
    if code == RunDetail.CONNECTOR_DISABLED:
        return gettext("The connector is disabled; records stay pending until it is enabled.")
    if code == RunDetail.DISABLED_DURING_RUN:
        left = int(params.get("left", 0))
        return ngettext(
            "The connector was disabled during the sync; %(count)d record was not sent "
            "and stays pending.",
            "The connector was disabled during the sync; %(count)d records were not sent "
            "and stay pending.",
            left,
        ) % {"count": left}
    if code == RunDetail.CLOSED_BY_SWEEP:
        return gettext("The sync was closed by the sweep; it sends nothing more.")
    if code == RunDetail.CREDENTIALS_REFUSED:
        return gettext("The accounting system refused the credentials: %(error)s") % {
            "error": params.get("error", "")
        }
    if code == RunDetail.ABANDONED:
        return gettext(
            "The sync stopped because its worker stopped answering. The records it was "
            "sending are checked in the accounting system before they are sent again; those "
            "it had not sent yet go back to the queue."
        )
    if code == RunDetail.UNEXPECTED_ERROR:
        return gettext(
            "The sync stopped on an unexpected error; the records it was sending are checked "
            "in the accounting system before they are sent again."
        )
    return code  # a code this version does not know: shown as stored rather than hidden


def skip_texts(run: SyncRun, labels: CategoryLabels | None = None) -> list[str]:
    """Why records were skipped, one line per reason, most records first.

    Categories are shown by the organization's names for them: a page of many runs
    passes `labels` read once; without them they are read here, once for this run.
    """
    stored = run.skip_reasons or []
    if isinstance(stored, dict):  # stored before the codes: {English sentence: count}
        legacy = sorted(stored.items(), key=lambda item: (-item[1], item[0]))
        return [f"{reason}: {count}" for reason, count in legacy]
    if labels is None and any(entry.get("code") == SkipReason.NO_MAPPING for entry in stored):
        labels = CategoryLabels.of(run.organization_id)
    return [skip_text(entry, labels) for entry in stored]


def skip_text(entry: Mapping[str, Any], labels: CategoryLabels | None = None) -> str:
    """One stored skip reason ({"code", "count", and its parameters}) in words."""
    code, count = entry.get("code", ""), int(entry.get("count", 0))
    if code == SkipReason.NO_MAPPING:
        category = str(entry.get("category", ""))
        return ngettext(
            "%(count)d waiting for a mapping: %(category)s",
            "%(count)d waiting for a mapping: %(category)s",
            count,
        ) % {"count": count, "category": labels[category] if labels is not None else category}
    if code == SkipReason.NO_PAYABLE_ACCOUNT:
        return ngettext(
            "%(count)d waiting for a payable account to be chosen on the mappings page",
            "%(count)d waiting for a payable account to be chosen on the mappings page",
            count,
        ) % {"count": count}
    return f"{code}: {count}"


def announcement(run: SyncRun) -> str:
    """A finished run in one sentence, for the dashboard and for screen readers (S3)."""
    if run.status == run.Status.SUCCEEDED and run.skipped:
        return ngettext(
            "Sync finished: %(sent)d sent, %(skipped)d skipped (see the sync history).",
            "Sync finished: %(sent)d sent, %(skipped)d skipped (see the sync history).",
            run.skipped,
        ) % {"sent": run.sent, "skipped": run.skipped}
    if run.status == run.Status.SUCCEEDED:
        return ngettext(
            "Sync finished: %(sent)d record sent.",
            "Sync finished: %(sent)d records sent.",
            run.sent,
        ) % {"sent": run.sent}
    if run.status == run.Status.PARTIAL:
        return ngettext(
            "Sync finished with errors: %(sent)d sent, %(failed)d failed.",
            "Sync finished with errors: %(sent)d sent, %(failed)d failed.",
            run.failed,
        ) % {"sent": run.sent, "failed": run.failed}
    return gettext("Sync failed: %(reason)s") % {"reason": outcome_text(run)}


def retry_announcement(run: SyncRun) -> str:
    """A finished run as the failed-records page says it: how many still fail (S6.4, S6.5)."""
    if run.status == run.Status.FAILED and not run.failed:
        return gettext("The retry did not run: %(reason)s") % {"reason": outcome_text(run)}
    if run.trigger == run.Trigger.RETRY:
        return ngettext(
            "Retry finished: %(sent)d sent, %(failed)d still failing.",
            "Retry finished: %(sent)d sent, %(failed)d still failing.",
            run.failed,
        ) % {"sent": run.sent, "failed": run.failed}
    return ngettext(
        "A sync finished: %(sent)d sent, %(failed)d failed.",
        "A sync finished: %(sent)d sent, %(failed)d failed.",
        run.failed,
    ) % {"sent": run.sent, "failed": run.failed}
