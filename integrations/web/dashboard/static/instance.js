// Instance page: draws the concurrency curve and the histogram (uPlot), keeps the numbers
// live by polling data.json while the instance is live, and redraws when the threshold moves.
(function () {
  "use strict";
  var root = document.getElementById("instance");
  if (!root || typeof uPlot === "undefined") { return; }
  var baseUrl = root.getAttribute("data-url");
  var live = root.getAttribute("data-live") === "1";
  var pollMs = 1000 * Number(root.getAttribute("data-poll") || 4);
  var input = document.getElementById("min_minutes");
  var form = document.getElementById("threshold-form");
  var tableLink = document.getElementById("table-link");
  var ageEl = document.getElementById("delivery-age");
  var asOfEl = document.getElementById("as-of");
  var curvePlot = null, histPlot = null, threshold = null, age = null, ageAt = Date.now();

  function width(el) { return Math.max(280, el.clientWidth || 600); }
  function text(n) { return n === null || n === undefined ? "\u2014" : String(n); }

  function dataUrl() {
    var v = input && input.value.trim();
    return baseUrl + (v ? "&min_minutes=" + encodeURIComponent(v) : "");
  }

  function drawCurve(d) {
    var el = document.getElementById("curve");
    var peak = d.curve.times.map(function (t) { return t === d.peak.time ? d.peak.present : null; });
    var data = [d.curve.times, d.curve.present, peak];
    if (curvePlot) { curvePlot.setData(data, false); return; }
    curvePlot = new uPlot({
      width: width(el), height: 260,
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: true } },
      series: [
        {},
        { label: "present", stroke: "#0b5cad", fill: "rgba(11,92,173,0.12)", width: 2, points: { show: false } },
        { label: "peak", stroke: "#b3261e", width: 0, points: { show: true, size: 10, fill: "#b3261e" } }
      ],
      axes: [{}, { label: "people" }]
    }, data, el);
  }

  function thresholdLine(u) {
    if (threshold === null || threshold === undefined) { return; }
    var x = u.valToPos(threshold, "x", true);
    var ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "#b3261e";
    ctx.lineWidth = 2 * (window.devicePixelRatio || 1);
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
    ctx.restore();
  }

  function drawHistogram(d) {
    var el = document.getElementById("histogram");
    var h = d.histogram;
    threshold = d.threshold_minutes;
    var xs = h.starts.map(function (s) { return s + h.bin_minutes / 2; });
    var data = [xs, h.counts];
    if (histPlot) { histPlot.setData(data, true); histPlot.redraw(); return; }
    histPlot = new uPlot({
      width: width(el), height: 240,
      scales: { x: { time: false } },
      series: [
        { label: "minutes" },
        { label: "people", stroke: "#1a7f37", fill: "rgba(26,127,55,0.35)", paths: uPlot.paths.bars({ size: [0.9, 60] }), points: { show: false } }
      ],
      axes: [{ label: "minutes attended" }, { label: "people" }],
      hooks: { draw: [thresholdLine] }
    }, data, el);
  }

  function showNumbers(d) {
    Object.keys(d.metrics).forEach(function (name) {
      var el = root.querySelector('[data-metric="' + name + '"]');
      if (el) { el.textContent = text(d.metrics[name]); }
    });
    Object.keys(d.reconciliation).forEach(function (name) {
      var el = root.querySelector('[data-recon="' + name + '"]');
      if (el) { el.textContent = text(d.reconciliation[name]); }
    });
    if (asOfEl) { asOfEl.textContent = d.as_of; }
    age = d.newest_delivery_age_seconds;
    ageAt = Date.now();
    showAge();
  }

  function showAge() {
    if (!ageEl) { return; }
    if (age === null || age === undefined) { ageEl.textContent = "none yet"; return; }
    ageEl.textContent = (age + Math.round((Date.now() - ageAt) / 1000)) + " s ago";
  }

  function load() {
    return fetch(dataUrl(), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (r.redirected || r.status === 401) { window.location.reload(); throw new Error("signed out"); }
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(function (d) { showNumbers(d); drawCurve(d); drawHistogram(d); live = d.live; });
  }

  function poll() {
    load().catch(function () { /* keep the last numbers; the next poll retries */ })
      .then(function () { if (live) { window.setTimeout(poll, pollMs); } });
  }

  if (input) {
    var timer = null;
    input.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(function () {
        load().catch(function () {});
        if (tableLink) {
          var u = new URL(tableLink.href, window.location.href);
          if (input.value.trim()) { u.searchParams.set("min_minutes", input.value.trim()); } else { u.searchParams.delete("min_minutes"); }
          tableLink.href = u.pathname + u.search;
        }
      }, 250);
    });
  }
  if (form) {
    form.addEventListener("submit", function () { /* a plain GET: the page reloads with the threshold */ });
  }
  window.addEventListener("resize", function () {
    ["curve", "histogram"].forEach(function (id, i) {
      var p = i === 0 ? curvePlot : histPlot;
      if (p) { p.setSize({ width: width(document.getElementById(id)), height: p.height }); }
    });
  });
  window.setInterval(showAge, 1000);
  poll();
}());
