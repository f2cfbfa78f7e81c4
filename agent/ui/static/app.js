// Keeps the page current without a reload: asks the server for this page's <main> once the
// board has moved past the generation shown (the server holds the request until then, or
// answers 204). The page is complete without this script.
(function () {
  "use strict";
  var main = document.getElementById("main");
  var live = document.getElementById("live");
  if (!main || !window.fetch) { return; }
  var stopped = false;
  function mark(state) {
    if (live) { live.className = "live " + state; }
  }
  function url() {
    var params = new URLSearchParams(window.location.search);
    params.set("fragment", "1");
    params.set("since", main.getAttribute("data-generation") || "0");
    return window.location.pathname + "?" + params.toString();
  }
  function later(ms) { window.setTimeout(poll, ms); }
  function poll() {
    if (stopped) { return; }
    fetch(url(), { credentials: "same-origin", cache: "no-store" }).then(function (answer) {
      if (answer.status === 204) { mark("on"); later(100); return null; }
      if (!answer.ok) { mark("stale"); later(5000); return null; }
      var generation = answer.headers.get("X-Board-Generation");
      return answer.text().then(function (html) {
        var open = document.querySelectorAll("details[open]");
        var opened = [];
        for (var i = 0; i < open.length; i++) { opened.push(open[i].textContent.slice(0, 80)); }
        main.innerHTML = html;  // server-rendered and escaped; the CSP forbids inline script
        if (generation) { main.setAttribute("data-generation", generation); }
        var all = main.querySelectorAll("details");
        for (var j = 0; j < all.length; j++) {
          if (opened.indexOf(all[j].textContent.slice(0, 80)) >= 0) { all[j].open = true; }
        }
        mark("on");
        later(250);
      });
    }).catch(function () { mark("stale"); later(5000); });
  }
  window.addEventListener("pagehide", function () { stopped = true; });
  mark("on");
  poll();
}());
