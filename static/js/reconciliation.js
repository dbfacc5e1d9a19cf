// The reconciliation page. Right after "Run reconciliation" the page comes back with the
// reading's progress marked data-focus-on-load: focus goes there, so a screen reader and a
// keyboard user land where the news is. A poll replaces the live part; while the reading
// runs htmx keeps focus on the progress (it has an id). When the reading ends the progress
// is gone and focus would fall to <body>, so it moves to the outcome (role="status",
// tabindex="-1") instead, as the dashboard does when a sync ends.
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    var first = document.querySelector("[data-focus-on-load]");
    if (first) {
      first.focus();
    }
  });

  var focusWasInLive = false;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    focusWasInLive = Boolean(target && target.id === "recon-live" &&
      document.activeElement && target.contains(document.activeElement));
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (!focusWasInLive) {
      return;
    }
    focusWasInLive = false;
    var lost = !document.activeElement || document.activeElement === document.body;
    var outcome = document.getElementById("recon-outcome");
    if (lost && outcome && !document.getElementById("recon-progress")) {
      outcome.focus();
    }
  });
})();
