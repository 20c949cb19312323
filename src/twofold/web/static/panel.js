// twofold panel: live progress of running jobs from the server's event stream
// (/events), drawn into #live; every browser on the panel sees the same jobs.
(function () {
  "use strict";
  var source = null;
  var last = null;  // the stream's latest rendering: newer than a page swapped in later
  function show(html) {
    last = html;
    var box = document.getElementById("live");
    var section = document.getElementById("live-section");
    if (!box || !section) { return; }
    var focused = document.activeElement;
    var keep = focused && box.contains(focused) && focused.closest(".job-live");
    var keepId = keep ? keep.getAttribute("data-id") : null;
    box.innerHTML = html;
    section.hidden = html.trim() === "";
    if (keepId) {
      var again = box.querySelector('.job-live[data-id="' + keepId + '"] button');
      if (again) { again.focus(); }
    }
    if (window.htmx) { window.htmx.process(box); }
  }
  function connect() {
    if (source) { return; }
    source = new EventSource("/events");
    source.addEventListener("live", function (e) { show(JSON.parse(e.data).html); });
    source.addEventListener("done", function () {
      // a job ended: the page's figures (last run, runs, images) are now out of date
      var refresh = document.querySelector("[data-refresh-on-done]");
      if (refresh && window.htmx) {
        window.htmx.ajax("GET", window.location.pathname + window.location.search,
                         {target: "body", swap: "innerHTML"});
      }
    });
  }
  document.addEventListener("DOMContentLoaded", connect);
  document.addEventListener("htmx:afterSettle", function () {
    if (last !== null) { show(last); }
    var main = document.getElementById("main");
    if (main && document.activeElement === document.body) { main.focus({preventScroll: true}); }
  });
})();
