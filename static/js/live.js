// Live parts of a page ([data-live]) poll a fragment view (hx-trigger="every 2s, live-refresh").
// A hidden tab polls once every 30 s instead of every tick; coming back refreshes at once.
// The throttle is an htmx:confirm listener, not a trigger filter ("every 2s [...]"): htmx
// runs filters through Function(), which the Content-Security-Policy forbids (allowEval is
// off in base.html's htmx-config).
(function () {
  "use strict";
  var HIDDEN_EVERY_MS = 30000;
  // When each live part last polled, by its id: a poll that brings news replaces the element
  // (hx-swap="outerHTML"), and a time kept on the element would go with it.
  var lastPoll = {};

  function due(element) {
    var now = Date.now();
    var key = element.id || "";
    if (!document.hidden || now - (lastPoll[key] || 0) >= HIDDEN_EVERY_MS) {
      lastPoll[key] = now;
      return true;
    }
    return false;
  }

  document.addEventListener("htmx:confirm", function (event) {
    var element = event.detail.elt;
    // A poll has no triggering event; live-refresh (below) always goes through.
    if (element.hasAttribute("data-live") && !event.detail.triggeringEvent && !due(element)) {
      event.preventDefault();
    }
  });

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && window.htmx) {
      document.querySelectorAll("[data-live]").forEach(function (element) {
        window.htmx.trigger(element, "live-refresh");
      });
    }
  });
})();
