// Charts of runs' metrics that follow live runs: the data the page holds, how it is kept up to
// date, and how it is drawn with Plotly.
//
// The page asks /api/series for everything once, up to a snapshot id (the answer's last_id),
// then, every refresh, only for what came after it (after_id=last_id): the server reads those
// rows by id range, so an update costs what was written since, never the history. A series
// added later (a metric ticked on the compare page) is read up to the same snapshot
// (until_id), so every series always stands at one id and the next update serves them all.
// Requests go one at a time, in order (a promise chain), so an update never overlaps a load.
"use strict";

const Charts = (() => {
  const { api, el, clip, plotText, formatNumber } = ORM;
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const DASHES = ["solid", "dot", "dash", "longdash", "dashdot", "longdashdot"];

  // What a chart can show: two points (a min and a max) per pixel column of one chart, whose
  // width follows the grid in style.css (columns of at least CHART_MIN_WIDTH_PX, GAP_PX apart).
  const CHART_MIN_WIDTH_PX = 520, GAP_PX = 12;
  function maxPoints(container) {
    const width = (container && container.clientWidth) || window.innerWidth || 1200;
    const columns = Math.max(1, Math.floor((width + GAP_PX) / (CHART_MIN_WIDTH_PX + GAP_PX)));
    const points = Math.max(200, Math.min(8000, 2 * Math.round((width - GAP_PX * (columns - 1)) / columns)));
    ORM.marks.maxPoints = points;
    return points;
  }

  // Keep the lowest and highest of each of max/2 buckets: what the server does, for a trace
  // that live updates have grown past several times what the chart can show.
  function compact(trace, max) {
    const n = trace.value.length, buckets = Math.max(1, Math.floor(max / 2)), size = Math.ceil(n / buckets);
    const out = { step: [], time_ms: [], value: [] };
    for (let start = 0; start < n; start += size) {
      let low = -1, high = -1;
      const end = Math.min(n, start + size);
      for (let i = start; i < end; i++) {
        const v = trace.value[i];
        if (v === null) continue;
        if (low < 0 || v < trace.value[low]) low = i;
        if (high < 0 || v > trace.value[high]) high = i;
      }
      const keep = low < 0 ? [start] : low === high ? [low] : [Math.min(low, high), Math.max(low, high)];
      for (const i of keep) { out.step.push(trace.step[i]); out.time_ms.push(trace.time_ms[i]); out.value.push(trace.value[i]); }
    }
    Object.assign(trace, out);
  }

  class SeriesData {
    constructor() {
      this.lastId = null;
      this.series = new Map(); // "run\0metric" -> {run, metric, downsampled, traces: Map(key -> trace)}
    }
    static id(run, metric) { return run + "\u0000" + metric; }
    get(run, metric) { return this.series.get(SeriesData.id(run, metric)); }
    // Store an answer's series; with append, add their points to what is held.
    merge(list, append, max) {
      let added = 0;
      for (const s of list) {
        const id = SeriesData.id(s.run, s.metric);
        let entry = this.series.get(id);
        if (!entry || !append) { entry = { run: s.run, metric: s.metric, downsampled: false, traces: new Map() }; this.series.set(id, entry); }
        entry.downsampled = entry.downsampled || s.downsampled;
        for (const t of s.traces) {
          added += t.value.length;
          const held = entry.traces.get(t.key);
          if (!held) { entry.traces.set(t.key, t); continue; }
          for (const field of ["step", "time_ms", "value"]) for (const v of t[field]) held[field].push(v);
          if (held.value.length > 4 * max) { compact(held, max); entry.downsampled = true; }
        }
      }
      return added;
    }
  }

  // Debiased exponential moving average (weight in [0, 1)); gaps stay gaps.
  function ema(values, weight) {
    const out = new Array(values.length);
    let last = 0, n = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v === null || !isFinite(v)) { out[i] = null; continue; }
      last = last * weight + (1 - weight) * v;
      n++;
      out[i] = last / (1 - Math.pow(weight, n));
    }
    return out;
  }

  // Mean of the last `window` values (fewer at the start); gaps stay gaps.
  function trailingMean(values, window) {
    const out = new Array(values.length), held = [];
    let sum = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v === null || !isFinite(v)) { out[i] = null; continue; }
      held.push(v); sum += v;
      if (held.length > window) sum -= held.shift();
      out[i] = sum / held.length;
    }
    return out;
  }

  function smooth(values, options) {
    if (options.smooth === "ema" && options.weight > 0) return ema(values, Math.min(0.999, options.weight));
    if (options.smooth === "mean" && options.window > 1) return trailingMean(values, Math.round(options.window));
    return null;
  }

  // A legend (and hover) name: every part is the user's, so the whole is escaped for Plotly;
  // each part is cut first, so a long run id leaves room for its rank and attributes.
  const NAME_PART_MAX = 100;
  function traceName(runLabel, trace, ranksInRun) {
    let name = clip(runLabel, NAME_PART_MAX);
    if (ranksInRun > 1 || (trace.rank !== null && trace.rank !== 0)) name += ` · rank ${clip(trace.rank, NAME_PART_MAX)}`;
    if (trace.restart) name += ` · restart ${clip(trace.restart, NAME_PART_MAX)}`;
    const attrs = Object.entries(trace.attributes || {}).map(([k, v]) => `${clip(k, NAME_PART_MAX)}=${clip(v, NAME_PART_MAX)}`).join(", ");
    return plotText(attrs ? `${name} · ${attrs}` : name, 2 * ORM.PLOT_TEXT_MAX);
  }

  // A board: the charts of a set of runs x metrics, drawn into `container`, kept live.
  class Board {
    constructor(container, options) {
      this.container = container;
      this.options = options; // {x, smooth, weight, window, ranks}
      this.runs = [];
      this.metrics = [];
      this.labels = {}; // run key -> label
      this.starts = {}; // run key -> first point's time (ms), for x = time
      this.data = new SeriesData();
      this.charts = new Map(); // chart id -> div
      this.queue = Promise.resolve();
      this.live = true;
      this.onUpdate = null;
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

    chartGroups() {
      const groups = [];
      for (const metric of this.metrics) {
        if (this.options.ranks !== "split") { groups.push({ id: metric, title: metric, metric, rank: undefined }); continue; }
        const ranks = new Set();
        for (const run of this.runs) {
          const entry = this.data.get(run, metric);
          if (entry) for (const t of entry.traces.values()) ranks.add(t.rank);
        }
        const sorted = [...ranks].sort((a, b) => (a ?? -1) - (b ?? -1));
        if (!sorted.length) sorted.push(undefined);
        for (const rank of sorted) groups.push({ id: `${metric}\u0000${rank}`, title: rank === undefined ? metric : `${clip(metric, NAME_PART_MAX)} · rank ${clip(rank, NAME_PART_MAX)}`, metric, rank });
      }
      return groups;
    }

    xOf(run, trace) {
      if (this.options.x === "step") return trace.step;
      if (this.options.x === "wall") return trace.time_ms;
      const start = this.starts[run] ?? trace.time_ms[0] ?? 0;
      return trace.time_ms.map((t) => (t - start) / 1000);
    }

    plotTraces(group) {
      const out = [];
      let points = 0, downsampled = false;
      this.runs.forEach((run, runIndex) => {
        const entry = this.data.get(run, group.metric);
        if (!entry) return;
        downsampled = downsampled || entry.downsampled;
        const color = COLORS[runIndex % COLORS.length];
        const traces = [...entry.traces.values()].filter((t) => group.rank === undefined || t.rank === group.rank);
        const ranks = new Set(traces.map((t) => t.rank)).size;
        traces.forEach((trace, i) => {
          const x = this.xOf(run, trace);
          const name = traceName(this.labels[run] || run || "(none)", trace, ranks);
          const line = { color, width: 1.5, dash: DASHES[i % DASHES.length] };
          const smoothed = smooth(trace.value, this.options);
          points += trace.value.length;
          const common = { type: "scatter", mode: "lines", x, name, legendgroup: `${run}\u0000${trace.key}`, connectgaps: false };
          if (smoothed) {
            out.push({ ...common, y: trace.value, line: { ...line, width: 1 }, opacity: 0.25, showlegend: false, hoverinfo: "skip" });
            out.push({ ...common, y: smoothed, line });
          } else {
            out.push({ ...common, y: trace.value, line });
          }
        });
      });
      return { traces: out, points, downsampled };
    }

    layout(group, downsampled) {
      const xTitle = { step: "step", time: "seconds since the run's first point", wall: "wall clock (UTC)" }[this.options.x];
      return {
        title: { text: plotText(group.title) + (downsampled ? " <span style='font-size:11px;color:#888'>(downsampled, spikes kept)</span>" : ""), font: { size: 14 }, x: 0.02 },
        margin: { l: 55, r: 15, t: 48, b: 45 },
        xaxis: { title: { text: xTitle }, type: this.options.x === "wall" ? "date" : "linear", zeroline: false },
        yaxis: { zeroline: false, exponentformat: "e" },
        legend: { orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom", font: { size: 11 } },
        hovermode: "x unified",
        // Whole names in the hover label (they are cut to a bound before they reach Plotly):
        // Plotly's own cut counts the escaped text and could end inside an entity.
        hoverlabel: { namelength: -1 },
        // A live update keeps the user's zoom: Plotly resets it only when uirevision changes.
        uirevision: `${this.options.x}`,
        height: 340,
      };
    }

    // Draw every chart (or only those of `onlyMetric`), adding and removing charts to match.
    draw(onlyMetric) {
      if (!window.Plotly) return; // select() draws once the bundle is there
      const groups = this.chartGroups();
      const wanted = new Set(groups.map((g) => g.id));
      for (const [id, div] of this.charts) if (!wanted.has(id)) { Plotly.purge(div); div.remove(); this.charts.delete(id); }
      if (!groups.length) { this.container.replaceChildren(el("p", { class: "empty" }, "Pick runs and metrics to draw.")); return; }
      this.container.querySelector("p.empty")?.remove();
      const drawn = [];
      groups.forEach((group, index) => {
        let div = this.charts.get(group.id);
        if (!div) { div = el("div", { class: "chart" }); this.charts.set(group.id, div); }
        if (this.container.children[index] !== div) this.container.insertBefore(div, this.container.children[index] || null);
        if (onlyMetric !== undefined && group.metric !== onlyMetric) { drawn.push(Promise.resolve(Number(div.dataset.points || 0))); return; }
        const { traces, points, downsampled } = this.plotTraces(group);
        div.dataset.metric = group.metric;
        div.dataset.points = String(points);
        div.dataset.traces = String(traces.length);
        const config = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
        drawn.push(Plotly.react(div, traces, this.layout(group, downsampled), config).then(() => points));
      });
      for (const promise of drawn) promise.then((n) => { if (n > 0) ORM.mark("firstChartMs"); });
      Promise.all(drawn).then((counts) => {
        if (counts.length && counts.every((n) => n > 0)) ORM.mark("allChartsMs");
      });
    }
  }

  return { Board, ema, trailingMean, maxPoints, formatNumber };
})();
