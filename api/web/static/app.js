// TeckoChecker dashboard: the little that needs script. Every page works without it.
// - [data-live-url]: re-fetch this fragment every 2 s and swap it in (no full reload) while the job runs.
// - time[data-relative]: keep "in 42 s" / "3 min ago" true while the page stays open (as api/web/formatting.py
//   writes it on the server; the UTC time is in the title).
// - [data-copy]: copy the text of the element with that id.
// No eval, no inline handlers: the Content-Security-Policy allows scripts from this origin only.
(function () {
  "use strict";
  var LIVE_INTERVAL_MS = 2000;
  var UNITS = [[86400, "d"], [3600, "h"], [60, "min"], [1, "s"]];

  function relativeText(iso) {
    var seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
    if (isNaN(seconds)) { return null; }
    if (seconds === 0) { return "now"; }
    var distance = Math.abs(seconds);
    for (var index = 0; index < UNITS.length; index++) {
      if (distance >= UNITS[index][0]) {
        var text = Math.floor(distance / UNITS[index][0]) + " " + UNITS[index][1];
        return seconds > 0 ? "in " + text : text + " ago";
      }
    }
    return null;
  }

  function refreshRelativeTimes() {
    document.querySelectorAll("time[data-relative]").forEach(function (element) {
      var text = relativeText(element.getAttribute("datetime"));
      if (text !== null && element.textContent !== text) { element.textContent = text; }
    });
  }

  function userIsBusyIn(element) {
    // Never replace what someone is using: an open confirmation, or a focused control inside the fragment.
    var focused = document.activeElement;
    return element.querySelector("details[open]") !== null || (focused && focused !== document.body && element.contains(focused));
  }

  function scheduleLive(element) {
    window.setTimeout(function () { refreshLive(element); }, LIVE_INTERVAL_MS);
  }

  function refreshLive(element) {
    var url = element.getAttribute("data-live-url");
    if (!url || !document.body.contains(element)) { return; }
    if (userIsBusyIn(element) || document.hidden) { scheduleLive(element); return; }
    fetch(url, { credentials: "same-origin", headers: { "X-Dashboard-Fragment": "1" } })
      .then(function (response) {
        if (response.status === 401) { throw new Error("signed-out"); }
        if (!response.ok) { throw new Error("status " + response.status); }
        return response.text();
      })
      .then(function (html) {
        var template = document.createElement("template");
        template.innerHTML = html.trim();
        var fresh = template.content.firstElementChild;
        if (fresh && fresh.id === element.id) {
          element.replaceWith(fresh);
          element = fresh;
        }
        if (element.getAttribute("data-live-url")) { scheduleLive(element); }
      })
      .catch(function (error) {
        if (error.message === "signed-out") {
          element.insertAdjacentHTML("afterbegin", '<p class="notice notice-error">Your session ended: reload the page to sign in again.</p>');
          return;
        }
        scheduleLive(element);  // a blip in the network: try again at the next tick
      });
  }

  function copyFrom(button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    var status = document.querySelector(".copy-status");
    if (!source) { return; }
    var done = function (message) { if (status) { status.textContent = message; } };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(source.textContent).then(
        function () { done("Copied."); },
        function () { done("Select the text and copy it with Ctrl+C."); }
      );
    } else {
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      done("Selected: press Ctrl+C (⌘C) to copy.");
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    window.setInterval(refreshRelativeTimes, 1000);
    document.querySelectorAll("[data-live-url]").forEach(scheduleLive);
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () { copyFrom(button); });
    });
  });
})();
