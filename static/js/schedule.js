// The schedule form previews itself on every change, except a change of a field that asks
// for its own preview (the cron input, hx-get with a typing delay): that one would be asked
// twice. An htmx:confirm listener, not a trigger filter: see live.js for why.
(function () {
  "use strict";

  document.addEventListener("htmx:confirm", function (event) {
    var form = event.detail.elt;
    var trigger = event.detail.triggeringEvent;
    if (
      form.hasAttribute("data-preview-form") &&
      trigger &&
      trigger.type === "change" &&
      trigger.target !== form &&
      trigger.target.hasAttribute("hx-get")
    ) {
      event.preventDefault();
    }
  });
})();
