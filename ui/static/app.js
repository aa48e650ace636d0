// The run browser's page script: draws the Plotly figures embedded in the page and keeps live pages current.
(function () {
  "use strict";

  function draw(el) {
    var target = document.getElementById(el.dataset.target);
    var spec = JSON.parse(el.textContent);
    Plotly.newPlot(target, spec.data, spec.layout, {responsive: true, displaylogo: false});
    target.dataset.drawn = "1";
    // A point that names a candidate page (the fitness plot) opens it.
    target.on("plotly_click", function (ev) {
      var point = ev.points && ev.points[0];
      if (point && typeof point.customdata === "string") {
        window.location.href = window.location.pathname.replace(/\/$/, "") + "/" + point.customdata;
      }
    });
  }

  // One plot per task, in page order: the page shows (and scrolls) while the plots below are still drawn.
  function drawPlots() {
    var todo = Array.prototype.slice.call(document.querySelectorAll("script.plot-spec"));
    (function next() {
      if (!todo.length) { return; }
      draw(todo.shift());
      setTimeout(next, 0);
    })();
  }

  function signed(x) {
    return x === null || x === undefined ? "" : (x >= 0 ? "+" : "") + x.toFixed(3);
  }

  function updateRuns(data) {
    var running = false;
    data.runs.forEach(function (r) {
      var row = document.querySelector('tr[data-run="' + CSS.escape(r.run_id) + '"]');
      if (!row) { window.location.reload(); return; }  // a new run: draw the table again
      running = running || r.status === "running";
      var set = function (field, text) {
        var cell = row.querySelector('[data-field="' + field + '"]');
        if (cell && cell.textContent !== text) { cell.textContent = text; }
      };
      var status = row.querySelector('[data-field="status"] .status');
      if (status && status.textContent !== r.status) {
        status.textContent = r.status;
        status.className = "status status-" + r.status;
      }
      set("generations", String(r.generations));
      set("candidates", String(r.candidates));
      set("screened", String(r.screened));
      set("fully_evaluated", String(r.fully_evaluated));
      set("best_fitness", signed(r.best_fitness));
      set("spend", "$" + r.usd.toFixed(2) + " · " + r.llm_tokens.toLocaleString("en-US") + " tok");
      set("wall", ((r.wall_s || 0) / 60).toFixed(1) + " min");
    });
    return running;
  }

  function live() {
    var url = document.body.dataset.live;
    if (!url) { return; }
    var page = document.body.dataset.page;
    var timer = setInterval(function () {
      fetch(url, {cache: "no-store"}).then(function (res) { return res.json(); }).then(function (data) {
        if (page === "runs") {
          if (!updateRuns(data)) { clearInterval(timer); }
        } else if (data.stamp !== document.body.dataset.stamp) {
          window.location.reload();  // the store changed: the run page is drawn again from the new snapshot
        }
      }).catch(function () { /* the server went away: keep the page as it is */ });
    }, 2000);
  }

  drawPlots();
  live();
})();
