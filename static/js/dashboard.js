// Trigger Sync Now: the button opens the confirmation <dialog> instead of the
// confirmation page; after the sync starts, focus moves to its progress so a screen
// reader and a keyboard user land where the news is.
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-opens-dialog]");
    if (opener) {
      var dialog = document.getElementById(opener.dataset.opensDialog);
      if (dialog && typeof dialog.showModal === "function") {
        event.preventDefault();
        dialog.showModal();
      }
      return;
    }
    var closer = event.target.closest("[data-closes-dialog]");
    if (closer) {
      closer.closest("dialog").close();
    }
  });

  // A poll replaces the status section. While a sync runs htmx keeps focus on the progress
  // (it has an id); when the sync ends the progress is gone and focus would fall to <body>,
  // so it moves to the outcome message instead (role="status", tabindex="-1").
  var focusWasInStatus = false;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    focusWasInStatus = Boolean(target && target.id === "dashboard-status" &&
      document.activeElement && target.contains(document.activeElement));
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (!focusWasInStatus) {
      return;
    }
    focusWasInStatus = false;
    var lost = !document.activeElement || document.activeElement === document.body;
    var outcome = document.getElementById("last-outcome");
    if (lost && outcome && !document.getElementById("sync-progress")) {
      outcome.focus();
    }
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var dialog = event.detail.elt.closest && event.detail.elt.closest("dialog");
    if (!dialog || !dialog.open) {
      return;
    }
    dialog.close();
    var progress = document.getElementById("sync-progress") || document.getElementById("dashboard-status");
    if (progress) {
      if (!progress.hasAttribute("tabindex")) {
        progress.setAttribute("tabindex", "-1");
      }
      progress.focus();
    }
  });
})();
