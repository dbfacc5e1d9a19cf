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
