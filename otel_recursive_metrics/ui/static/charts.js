// Charts of runs' metrics that follow live runs: which charts a board shows, in which sections,
// how they are kept up to date, and each chart's own tools (log scale, CSV).
//
// The page asks /api/series for everything once, up to a snapshot id (the answer's last_id),
// then, every refresh, only for what came after it (after_id=last_id): the server reads those
// rows by id range, so an update costs what was written since, never the history. A series
// added later (a metric ticked on the compare page) is read up to the same snapshot
// (until_id), so every series always stands at one id and the next update serves them all.
// Requests go one at a time, in order (a promise chain), so an update never overlaps a load.
//
// Charts are grouped into sections by the metrics' prefix (train., val., system.), each a
// <details> that folds away. A histogram metric gets two charts: its mean as a line, and its
// distribution over time as bands of percentiles (computed by the server from the buckets).
"use strict";

const Charts = (() => {
  const { api, el, clip } = ORM;
  const NAME_PART_MAX = 100;

  // What a chart can show: two points (a min and a max) per device pixel column of one chart,
  // whose width follows the grid in style.css (columns of at least CHART_MIN_WIDTH_PX, GAP_PX
  // apart); never fewer than MIN_POINTS, the server's default (a run of 1,500 steps is drawn
  // whole, and says nothing about downsampling).
  const CHART_MIN_WIDTH_PX = 520, GAP_PX = 12, MIN_POINTS = 2000, MAX_POINTS = 8000;
  function maxPoints(container) {
    const width = (container && container.clientWidth) || window.innerWidth || 1200;
    const columns = Math.max(1, Math.floor((width + GAP_PX) / (CHART_MIN_WIDTH_PX + GAP_PX)));
    const pixels = ((width - GAP_PX * (columns - 1)) / columns) * (window.devicePixelRatio || 1);
    const points = Math.max(MIN_POINTS, Math.min(MAX_POINTS, 2 * Math.round(pixels)));
    ORM.marks.maxPoints = points;
    return points;
  }

  // A board: the charts of a set of runs x metrics, drawn into `container`, kept live.
  class Board {
    constructor(container, options) {
      this.container = container;
      this.options = options; // {x, smooth, weight, window, ranks, log: Set of metrics drawn on a log scale}
      this.runs = [];
      this.metrics = [];
      this.labels = {}; // run key -> label
      this.starts = {}; // run key -> first point's time (ms), for x = time
      this.colors = null; // run key -> {color, group, label, value} (Colors.assign), or null: by order
      this.data = new SeriesData.Store();
      this.charts = new Map(); // chart id -> {box, div, log, csv}
      this.sections = new Map(); // section name -> {node, grid, count}
      this.emptyText = "Pick runs and metrics to draw.";
      this.queue = Promise.resolve();
      this.live = true;
      this.onUpdate = null;
      this.onLogChange = null;
      ORM.onThemeChange(() => this.draw());
    }

    run(task) {
      this.queue = this.queue.then(task).catch((error) => ORM.setStatus(String(error.message || error), true));
      return this.queue;
    }

    // Show these runs and metrics: load what is not held yet (up to the held snapshot), draw.
    select(runs, metrics) {
      this.runs = runs.slice();
      this.metrics = metrics.slice();
      return this.run(async () => {
        const missing = this.metrics.map((m) => [m, this.runs.filter((r) => !this.data.get(r, m))]).filter(([, rs]) => rs.length);
        if (missing.length && this.data.lastId === null) {
          // No snapshot yet (the page did not pass one): one request sets it.
          const loading = api("/api/series", { run: this.runs, metric: missing.map(([m]) => m), max_points: maxPoints(this.container) });
          await ORM.loadPlotly();
          const answer = await loading;
          this.data.lastId = answer.last_id;
          this.data.merge(answer.series, false, maxPoints(this.container));
        } else if (missing.length) {
          // One request per metric, all at once and up to the same snapshot: the server reads
          // them side by side, and each chart is drawn as soon as its data is in.
          const loads = missing.map(([metric, runs]) =>
            api("/api/series", { run: runs, metric, until_id: this.data.lastId, max_points: maxPoints(this.container) }).then(async (answer) => {
              await ORM.loadPlotly();
              this.data.merge(answer.series, false, maxPoints(this.container));
              this.draw(metric);
            }));
          await Promise.all(loads);
        }
        await ORM.loadPlotly();
        this.draw();
      });
    }

    // One live update: what was added after the snapshot, appended; then the next snapshot.
    update() {
      return this.run(async () => {
        if (this.data.lastId === null || !this.runs.length || !this.metrics.length) return;
        await ORM.loadPlotly();
        const answer = await api("/api/series", { run: this.runs, metric: this.metrics, after_id: this.data.lastId, max_points: maxPoints(this.container) });
        const added = this.data.merge(answer.series, true, maxPoints(this.container));
        this.data.lastId = answer.last_id;
        ORM.marks.updates++;
        ORM.marks.lastUpdatePoints = added;
        if (added) this.draw();
        ORM.setStatus(`live · updated ${new Date().toLocaleTimeString()}${added ? ` · ${added} new point${added > 1 ? "s" : ""}` : ""}`);
        if (this.onUpdate) this.onUpdate(added);
      });
    }

    startPolling(intervalMs) {
      if (!intervalMs) return;
      const tick = () => {
        const next = () => setTimeout(tick, intervalMs);
        if (!this.live || document.hidden) return next();
        this.update().then(next, next);
      };
      setTimeout(tick, intervalMs);
    }

    ranksOf(metric) {
      const ranks = new Set();
      for (const run of this.runs) {
        const entry = this.data.get(run, metric);
        if (entry) for (const t of entry.traces.values()) ranks.add(t.rank);
      }
      const sorted = [...ranks].sort((a, b) => (a ?? -1) - (b ?? -1));
      return sorted.length ? sorted : [undefined];
    }

    // The charts to show: per metric a line (per rank when split), and a histogram's distribution.
    chartGroups() {
      const groups = [];
      for (const metric of this.metrics) {
        const views = this.data.about(metric).kind.includes("histogram") ? ["line", "distribution"] : ["line"];
        const ranks = this.options.ranks === "split" ? this.ranksOf(metric) : [undefined];
        for (const view of views) {
          for (const rank of ranks) {
            let title = rank === undefined ? metric : `${clip(metric, NAME_PART_MAX)} · rank ${clip(rank, NAME_PART_MAX)}`;
            if (view === "distribution") title += " · distribution";
            groups.push({ id: `${metric}\u0000${rank}\u0000${view}`, title, metric, rank, view, section: ORM.sectionOf(metric) });
          }
        }
      }
      return groups;
    }

    // What a chart draws: per run, the traces (or bands) of its rank, with colour and legend group.
    parts(group) {
      const out = [];
      this.runs.forEach((run, runIndex) => {
        const entry = this.data.get(run, group.metric);
        if (!entry) return;
        const held = group.view === "distribution" ? entry.distribution?.traces : entry.traces;
        const traces = [...(held ? held.values() : [])].filter((t) => group.rank === undefined || t.rank === group.rank);
        const assigned = this.colors && this.colors.get(run);
        const color = assigned ? assigned.color : Colors.PALETTE[runIndex % Colors.PALETTE.length];
        const ranks = new Set(traces.map((t) => t.rank)).size;
        traces.forEach((trace, index) => {
          const legend = assigned && assigned.group !== null
            ? { legendgroup: assigned.group, legendTitle: ORM.plotText(assigned.label, 80) }
            : { legendgroup: `${run}\u0000${trace.key}`, legendTitle: null };
          out.push({ run, trace, color, ranks, index, order: assigned || {}, ...legend });
        });
      });
      // Runs coloured by a parameter: its groups in the order of its values.
      if (this.colors) out.sort((a, b) => Colors.byValue(a.order, b.order));
      return out;
    }

    toggleLog(metric) {
      if (this.options.log.has(metric)) this.options.log.delete(metric); else this.options.log.add(metric);
      this.draw();
      if (this.onLogChange) this.onLogChange();
    }

    section(name) {
      let section = this.sections.get(name);
      if (section) return section;
      const grid = el("div", { class: "charts" });
      const count = el("span", { class: "count" });
      const node = el("details", { class: "metric-section", open: true, "data-section": name }, el("summary", {}, el("span", { class: "section-name" }, name), count), grid);
      // A folded section's charts had no width to lay out in: fit them once it opens.
      node.addEventListener("toggle", () => { if (node.open && window.Plotly) for (const div of grid.querySelectorAll(".chart")) Plotly.Plots.resize(div); });
      section = { node, grid, count };
      this.sections.set(name, section);
      return section;
    }

    chart(group) {
      let chart = this.charts.get(group.id);
      if (chart) return chart;
      const div = el("div", { class: "chart" });
      const log = el("button", { type: "button", class: "log-toggle", title: "logarithmic y axis", onclick: () => this.toggleLog(group.metric) }, "log y");
      const csv = el("a", { class: "csv", download: "", title: "every point of this chart, as CSV" }, "CSV");
      const box = el("div", { class: "chart-box" }, el("div", { class: "chart-tools" }, log, csv), div);
      chart = { box, div, log, csv };
      this.charts.set(group.id, chart);
      return chart;
    }

    // Sections and charts in the order of the groups, adding and removing them to match.
    place(groups) {
      const wanted = new Set(groups.map((g) => g.id));
      for (const [id, chart] of this.charts) if (!wanted.has(id)) { Plotly.purge(chart.div); chart.box.remove(); this.charts.delete(id); }
      const names = [...new Set(groups.map((g) => g.section))];
      for (const [name, section] of this.sections) if (!names.includes(name)) { section.node.remove(); this.sections.delete(name); }
      names.forEach((name, i) => {
        const { node } = this.section(name);
        if (this.container.children[i] !== node) this.container.insertBefore(node, this.container.children[i] || null);
      });
      const placed = new Map();
      for (const group of groups) {
        const { grid, count } = this.section(group.section);
        const index = placed.get(group.section) || 0;
        const { box } = this.chart(group);
        if (grid.children[index] !== box) grid.insertBefore(box, grid.children[index] || null);
        placed.set(group.section, index + 1);
        count.textContent = ` ${index + 1} chart${index ? "s" : ""}`;
      }
    }

    // Draw every chart (or only those of `onlyMetric`).
    draw(onlyMetric) {
      if (!window.Plotly) return; // select() draws once the bundle is there
      const groups = this.chartGroups();
      if (!groups.length) {
        for (const chart of this.charts.values()) Plotly.purge(chart.div);
        this.charts.clear();
        this.sections.clear();
        this.container.replaceChildren(el("p", { class: "empty" }, this.emptyText));
        return;
      }
      this.container.querySelector(":scope > p.empty")?.remove();
      this.place(groups);
      const theme = ORM.theme();
      const drawn = [];
      for (const group of groups) {
        const chart = this.charts.get(group.id);
        if (onlyMetric !== undefined && group.metric !== onlyMetric) { drawn.push(Promise.resolve(Number(chart.div.dataset.points || 0))); continue; }
        drawn.push(this.drawChart(group, chart, theme));
      }
      for (const promise of drawn) promise.then((n) => { if (n > 0) ORM.mark("firstChartMs"); });
      Promise.all(drawn).then((counts) => {
        if (counts.length && counts.every((n) => n > 0)) ORM.mark("allChartsMs");
      });
    }

    drawChart(group, chart, theme) {
      const { div } = chart;
      const parts = this.parts(group);
      const axis = Plots.xAxisOf(this.options.x, parts.map((p) => p.trace));
      const labelOf = (run) => this.labels[run] || run || "(none)";
      const entry = this.runs.map((r) => this.data.get(r, group.metric)).find(Boolean);
      const notes = [];
      const shared = Plots.sharedAttributes(parts.map((p) => p.trace));
      let built;
      if (group.view === "distribution") {
        built = Plots.bands(parts, entry?.distribution?.percentiles || [], axis, this.starts, labelOf, shared);
        if (built.sampled) notes.push("sampled");
      } else {
        built = Plots.lines(parts, this.options, axis, this.starts, labelOf, shared);
        if (built.downsampled) notes.push("downsampled, spikes kept");
      }
      const log = this.options.log.has(group.metric);
      const layout = Plots.layout({
        title: group.title, unit: this.data.about(group.metric).unit, axis, noSteps: this.options.x === "step" && axis !== "step", notes, shared, log,
        legendNames: built.traces.filter((t) => t.showlegend !== false).map((t) => t.name), grouped: parts.some((p) => p.legendTitle), widthPx: div.clientWidth || 600,
      }, theme);
      if (group.view === "distribution") div.dataset.distribution = group.metric; else div.dataset.metric = group.metric;
      Object.assign(div.dataset, { points: String(built.points), traces: String(built.traces.length), x: axis, log: String(log) });
      chart.log.classList.toggle("on", log);
      chart.log.setAttribute("aria-pressed", String(log));
      const runs = this.runs.filter((r) => this.data.get(r, group.metric));
      const query = [...runs.map((r) => ["run", r]), ["metric", group.metric]];
      if (this.data.lastId !== null) query.push(["until_id", String(this.data.lastId)]); // what the chart shows, every point of it
      chart.csv.href = "/api/csv?" + new URLSearchParams(query);
      const config = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
      return Plotly.react(div, built.traces, layout, config).then(() => built.points);
    }
  }

  return { Board, maxPoints };
})();
