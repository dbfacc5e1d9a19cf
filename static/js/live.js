// Live parts of a page poll a fragment view (hx-trigger="every 2s [liveDue(this)], live-refresh").
// A hidden tab polls once every 30 s instead of every tick; coming back refreshes at once.
(function () {
  "use strict";
  var HIDDEN_EVERY_MS = 30000;

  window.liveDue = function (element) {
    var now = Date.now();
    if (!document.hidden || now - (element.liveLastPoll || 0) >= HIDDEN_EVERY_MS) {
      element.liveLastPoll = now;
      return true;
    }
    return false;
  };

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && window.htmx) {
      document.querySelectorAll("[data-live]").forEach(function (element) {
        window.htmx.trigger(element, "live-refresh");
      });
    }
  });
})();
