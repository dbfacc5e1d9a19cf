// Failed records: "select every record on this page", and what a live re-render of the
// list must not take from the person using it. Ticks survive by hx-preserve (see the
// template); open attempt lists are reopened here; after a retry is sent, focus goes to
// the list's status line instead of being lost with the button that became disabled.
(function () {
  "use strict";
  var LIST = "failed-live";
  var openAttempts = [];

  function recordBoxes(form) {
    return form ? Array.prototype.slice.call(form.querySelectorAll('input[name="record"]')) : [];
  }

  function showSelectAll() {
    document.querySelectorAll("[data-select-all]").forEach(function (all) {
      var boxes = recordBoxes(all.form);
      var ticked = boxes.filter(function (box) { return box.checked; }).length;
      all.hidden = boxes.length === 0;
      all.checked = boxes.length > 0 && ticked === boxes.length;
      all.indeterminate = ticked > 0 && ticked < boxes.length;
    });
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches("[data-select-all]")) {
      recordBoxes(target.form).forEach(function (box) { box.checked = target.checked; });
    } else if (target.matches('input[name="record"]')) {
      showSelectAll();
    }
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === LIST) {
      openAttempts = Array.prototype.map.call(target.querySelectorAll("details[open]"), function (d) {
        return d.id;
      });
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    if (!event.target || event.target.id !== LIST) {
      return;
    }
    openAttempts.forEach(function (id) {
      var details = document.getElementById(id);
      if (details) {
        details.open = true;
      }
    });
    showSelectAll();
    var config = event.detail.requestConfig;
    var active = document.activeElement;
    if (config && config.verb === "post" && (!active || active === document.body || active.disabled)) {
      document.getElementById("failed-status").focus();
    }
  });

  document.addEventListener("DOMContentLoaded", showSelectAll);
})();
