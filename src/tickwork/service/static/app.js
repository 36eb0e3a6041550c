// tickwork UI enhancement (no build step). The page works without this file: it only
// (1) submits action forms with fetch instead of a page load and (2) re-renders the live
// sections ([data-live]) from the server when /api/events reports something.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var conn = document.getElementById("conn");
  var pending = null;

  function announce(text) {
    if (live) { live.textContent = text; }
  }

  function refresh() {
    if (pending) { clearTimeout(pending); }
    pending = setTimeout(doRefresh, 120);
  }

  function doRefresh() {
    pending = null;
    fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (!text) { return; }
        var doc = new DOMParser().parseFromString(text, "text/html");
        var focusedId = document.activeElement && document.activeElement.id;
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh) { el.replaceWith(document.importNode(fresh, true)); }
        });
        if (focusedId) {
          var again = document.getElementById(focusedId)
            || document.getElementById(focusedId.replace(/^toggle-/, "toggle-"));
          if (again) { again.focus(); }
        }
      })
      .catch(function () { /* the next event retries */ });
  }

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.hasAttribute || !form.hasAttribute("data-enhance")) { return; }
    ev.preventDefault();
    var button = form.querySelector("button");
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      body: new URLSearchParams(new FormData(form)),
    }).then(function (r) {
      var label = button ? button.getAttribute("aria-label") : "action";
      announce(r.ok ? label + ": done" : label + ": failed (" + r.status + ")");
      refresh();
    }).catch(function () { announce("The action could not be sent."); });
  });

  if (window.EventSource) {
    var source = new EventSource("/api/events");
    source.onopen = function () {
      if (conn) { conn.dataset.state = "on"; conn.textContent = "live"; }
    };
    source.onerror = function () {
      if (conn) { conn.dataset.state = "off"; conn.textContent = "reconnecting"; }
    };
    source.onmessage = function (msg) {
      var ev;
      try { ev = JSON.parse(msg.data); } catch (err) { return; }
      if (ev.type && ev.type.indexOf("run_") === 0 && ev.type !== "run_started") {
        var text = "Task " + ev.task_id + ": " + ev.type.replace("run_", "").replace("_", " ");
        if (ev.record && ev.record.duration != null) {
          text += " in " + ev.record.duration.toFixed(2) + " s";
        }
        announce(text);
      }
      refresh();
    };
  }
})();
