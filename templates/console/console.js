// Countersign console: the live inbox. When /ui/events says something
// changed, re-read the list (server-rendered, escaped HTML of our own
// origin) and put it in place. Nothing else runs on any page.
"use strict";
(function () {
  if (document.body.dataset.live !== "inbox" || !window.EventSource) return;
  var list = document.getElementById("inbox-list");
  var busy = false;
  function refresh() {
    if (busy) return;
    busy = true;
    fetch("/ui/inbox/list", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null) {
          list.innerHTML = html;
          document.body.dataset.refreshed = String(Date.now());
        }
      })
      .finally(function () { busy = false; });
  }
  var events = new EventSource("/ui/events");
  events.addEventListener("changed", refresh);
  events.addEventListener("open", function () { document.body.dataset.connected = "yes"; });
})();
