// TeckoChecker dashboard: the little that needs script. Every page works without it.
// - [data-live-url]: re-fetch this fragment every 2 s and swap it in (no full reload) while the job runs.
// - [data-copy]: copy the text of the element with that id.
// No eval, no inline handlers: the Content-Security-Policy allows scripts from this origin only.
(function () {
  "use strict";
  var LIVE_INTERVAL_MS = 2000;

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
    document.querySelectorAll("[data-live-url]").forEach(scheduleLive);
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () { copyFrom(button); });
    });
  });
})();
