// Charts of a seller's history (the seller page), drawn with uPlot from the table each chart
// stands for: the table is the source of the figures and stays on the page, so a reader
// without this script, without canvas or with a screen reader has every figure. Each table
// marked `data-chart` has a box `[data-charts-for=<its id>]` that gets three charts: rank,
// products listed and median price, over the runs' creation times.
(function () {
  "use strict";

  var STYLE = getComputedStyle(document.documentElement);
  var ACCENT = STYLE.getPropertyValue("--accent").trim() || "#1d4ed8";
  var MUTED = STYLE.getPropertyValue("--muted").trim() || "#5b6470";
  var GRID = STYLE.getPropertyValue("--border").trim() || "#dde1e6";
  var HEIGHT = 180;
  var WHOLE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];

  // The x axis: days ("Dec 3") when its ticks are a day or more apart, else times ("06:00",
  // "06:00:30" when they are seconds apart).
  function tick(seconds, step) {
    var zone = window.Collection ? window.Collection.zone : undefined;
    var options = { timeZone: zone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    if (step >= 86400) options = { timeZone: zone, month: "short", day: "numeric" };
    else if (step < 60) options.second = "2-digit";
    return new Intl.DateTimeFormat("en-US", options).format(new Date(seconds * 1000));
  }

  function moment(seconds) {
    var format = window.Collection && window.Collection.moment;
    var date = new Date(seconds * 1000);
    return format ? format(date) : date.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  // The figures of a table: [times, rank, products, median], null where a cell has none.
  function figures(table) {
    var columns = { rank: [], products: [], median: [] };
    var times = [];
    Array.prototype.forEach.call(table.querySelectorAll("tbody tr[data-time]"), function (row) {
      times.push(Number(row.getAttribute("data-time")));
      Object.keys(columns).forEach(function (name) {
        var cell = row.querySelector('[data-series="' + name + '"]');
        var text = cell ? cell.getAttribute("data-value") : "";
        columns[name].push(text === "" || text === null ? null : Number(text));
      });
    });
    return { times: times, rank: columns.rank, products: columns.products, median: columns.median };
  }

  function known(values) {
    return values.filter(function (value) { return value !== null; });
  }

  // "Rank in 5 runs: 12 on Mon 2026-11-02 06:00 CET, 4 on ... (latest)."
  function summary(title, times, values, show) {
    var first = -1, last = -1;
    values.forEach(function (value, index) {
      if (value === null) return;
      if (first < 0) first = index;
      last = index;
    });
    if (first < 0) return title + ": no figures.";
    return title + " in " + known(values).length + " runs: " + show(values[first]) + " on " +
      moment(times[first]) + ", " + show(values[last]) + " on " + moment(times[last]) +
      " (latest). Every run's figures are in the table below.";
  }

  function chart(box, spec, times, values) {
    var figure = document.createElement("figure");
    figure.className = "chart";
    var caption = document.createElement("figcaption");
    caption.textContent = spec.title;
    var plot = document.createElement("div");
    plot.setAttribute("role", "img");
    plot.setAttribute("aria-label", summary(spec.title, times, values, spec.show));
    figure.appendChild(caption);
    figure.appendChild(plot);
    box.appendChild(figure);
    var options = {
      width: Math.max(plot.clientWidth, 200),
      height: HEIGHT,
      padding: [12, 18, 0, 0],  // room for the last time on the x axis
      legend: { show: true, live: true },
      hooks: {
        // away from the chart, the legend tells the latest run's figures
        setCursor: [function (self) {
          if (self.cursor.idx === null || self.cursor.idx === undefined) self.setLegend({ idx: times.length - 1 });
        }]
      },
      cursor: { drag: { x: false, y: false }, points: { size: 8 } },
      scales: {
        x: { time: true },
        y: {
          dir: spec.reversed ? -1 : 1,
          range: function (self, min, max) {
            if (min === null || max === null) return [0, 1];
            var pad = spec.whole ? 0 : Math.max((max - min) * 0.15, max * 0.02);
            var low = spec.anchor !== undefined ? spec.anchor : Math.max(0, min - pad);
            var high = max + pad;
            return [low, high > low ? high : low + 1];
          }
        }
      },
      axes: [
        {
          stroke: MUTED,
          grid: { stroke: GRID, width: 1 },
          ticks: { stroke: GRID },
          values: function (self, splits, axis, space, step) {
            return splits.map(function (seconds) { return tick(seconds, step); });
          }
        },
        {
          stroke: MUTED,
          size: 56,
          grid: { stroke: GRID, width: 1 },
          ticks: { stroke: GRID },
          incrs: spec.whole ? WHOLE : undefined,
          values: function (self, splits) { return splits.map(spec.tick || spec.show); }
        }
      ],
      series: [
        { label: "Run", value: function (self, seconds) { return seconds === null ? "—" : moment(seconds); } },
        {
          label: spec.label,
          stroke: ACCENT,
          width: 2,
          spanGaps: true,
          points: { show: true, size: 6, fill: ACCENT },
          value: function (self, value) { return value === null ? "—" : spec.show(value); }
        }
      ]
    };
    var drawn = new window.uPlot(options, [times, values], plot);
    drawn.root.setAttribute("aria-hidden", "true");
    drawn.setLegend({ idx: times.length - 1 });
    return { plot: plot, drawn: drawn };
  }

  function draw(box) {
    var table = document.getElementById(box.getAttribute("data-charts-for"));
    if (!table) return;
    var data = figures(table);
    if (data.times.length < 2) return;
    var currency = box.getAttribute("data-currency");
    var whole = function (value) { return Math.round(value).toLocaleString("en-US"); };
    var money = function (value) {
      return value.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    };
    var specs = [
      { title: "Rank (1 lists the most products)", label: "Rank", values: data.rank, reversed: true, whole: true, anchor: 1, show: whole },
      { title: "Products listed", label: "Products", values: data.products, whole: true, anchor: 0, show: whole },
      {
        title: "Median price" + (currency ? " (" + currency + ")" : ""),
        label: "Median",
        values: data.median,
        tick: function (value) { return money(value); },
        show: function (value) { return money(value) + (currency ? " " + currency : ""); }
      }
    ];
    box.hidden = false;
    var charts = specs.filter(function (spec) { return known(spec.values).length > 0; })
      .map(function (spec) { return chart(box, spec, data.times, spec.values); });
    if (!window.ResizeObserver) return;
    new window.ResizeObserver(function () {
      charts.forEach(function (one) {
        var width = Math.max(one.plot.clientWidth, 200);
        if (width !== one.drawn.width) one.drawn.setSize({ width: width, height: HEIGHT });
      });
    }).observe(box);
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.uPlot) return;  // the tables alone
    Array.prototype.forEach.call(document.querySelectorAll("[data-charts-for]"), draw);
  });
})();
