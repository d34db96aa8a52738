// What a chart hands Plotly: its traces (lines, or a histogram's bands) and its layout (axes,
// unit, legend, theme). Every string of the user's (run, metric, attribute, unit) reaches Plotly
// through ORM.plotText: Plotly reads its strings as HTML.
"use strict";

const Plots = (() => {
  const { clip, plotText } = ORM;
  const DASHES = ["solid", "dot", "dash", "longdash", "dashdot", "longdashdot"];
  const HEIGHT_PX = 340, LEGEND_ROW_PX = 24, LEGEND_MAX_ROWS = 6, LEGEND_FONT_PX = 11;

  // A legend (and hover) name: every part is the user's, so the whole is escaped for Plotly;
  // each part is cut first, so a long run id leaves room for its rank and attributes.
  // Attributes every line of a chart shares are left out of the names (the title says them once).
  const NAME_PART_MAX = 100;
  function traceName(runLabel, trace, ranksInRun, shared) {
    let name = clip(runLabel, NAME_PART_MAX);
    if (ranksInRun > 1 || (trace.rank !== null && trace.rank !== undefined && trace.rank !== 0)) name += ` · rank ${clip(trace.rank, NAME_PART_MAX)}`;
    if (trace.restart) name += ` · restart ${clip(trace.restart, NAME_PART_MAX)}`;
    const attrs = Object.entries(trace.attributes || {}).filter(([k]) => !(shared && shared.has(k)))
      .map(([k, v]) => `${clip(k, NAME_PART_MAX)}=${clip(v, NAME_PART_MAX)}`).join(", ");
    return plotText(attrs ? `${name} · ${attrs}` : name, 2 * ORM.PLOT_TEXT_MAX);
  }

  // The attributes (key -> value) that every one of several traces has, with one value.
  function sharedAttributes(traces) {
    const out = new Map();
    if (traces.length < 2) return out;
    for (const [key, value] of Object.entries(traces[0].attributes || {})) {
      const text = JSON.stringify(value);
      if (traces.every((t) => Object.prototype.hasOwnProperty.call(t.attributes || {}, key) && JSON.stringify(t.attributes[key]) === text)) out.set(key, value);
    }
    return out;
  }

  // The x axis a chart is drawn on: the page's choice, except that a chart none of whose points
  // has a step (an SDK histogram, a gauge from a server) is drawn against time, and says so.
  function xAxisOf(x, traces) {
    if (x !== "step") return x;
    return traces.some((t) => t.step.some((s) => s !== null && s !== undefined)) ? "step" : "time";
  }

  function xValues(axis, trace, startMs) {
    if (axis === "step") return trace.step;
    if (axis === "wall") return trace.time_ms;
    const start = startMs ?? trace.time_ms[0] ?? 0;
    return trace.time_ms.map((t) => (t - start) / 1000);
  }

  // A part of a chart: {run, trace (or band), color, ranks (in the run's part of the chart),
  // index (among them), legendgroup, legendTitle (escaped, or null)}.
  function legendOf(part) {
    return part.legendTitle ? { legendgroup: part.legendgroup, legendgrouptitle: { text: part.legendTitle } } : { legendgroup: part.legendgroup };
  }

  // The traces of a chart's lines.
  function lines(parts, options, axis, starts, labelOf, shared) {
    const out = [];
    let points = 0, downsampled = false;
    for (const part of parts) {
      const { run, trace, color, ranks, index } = part;
      const x = xValues(axis, trace, starts[run]);
      const name = traceName(labelOf(run), trace, ranks, shared);
      const line = { color, width: 1.5, dash: DASHES[index % DASHES.length] };
      const smoothed = SeriesData.smooth(trace.value, options);
      points += trace.value.length;
      downsampled = downsampled || Boolean(trace.downsampled);
      // A single point draws no line: it is shown as a marker (a short-lived process's one export).
      const single = trace.value.filter((v) => v !== null).length <= 1;
      const common = { type: "scatter", mode: single ? "markers" : "lines", x, name, ...legendOf(part), connectgaps: false, marker: { color, size: 7 } };
      if (smoothed && !single) {
        out.push({ ...common, y: trace.value, line: { ...line, width: 1 }, opacity: 0.25, showlegend: false, hoverinfo: "skip" });
        out.push({ ...common, y: smoothed, line });
      } else {
        out.push({ ...common, y: trace.value, line });
      }
    }
    return { traces: out, points, downsampled };
  }

  // The traces of a histogram's distribution, as TensorBoard draws it: for each trace, bands
  // between the percentiles (min-max, then +-1.5, +-1, +-0.5 sigma), darker towards the
  // median, and the median as a line.
  function bands(parts, percentiles, axis, starts, labelOf, shared) {
    const out = [];
    let points = 0, sampled = false;
    const n = percentiles.length, median = Math.floor(n / 2);
    for (const part of parts) {
      const { run, trace: band, color, ranks } = part;
      const x = xValues(axis, band, starts[run]);
      const column = (k) => band.values.map((row) => row[k]);
      const legendgroup = part.legendgroup;
      for (let k = 0; k < median; k++) {
        const common = { type: "scatter", mode: "lines", x, legendgroup, showlegend: false, hoverinfo: "skip", line: { width: 0, color } };
        out.push({ ...common, y: column(k) });
        out.push({ ...common, y: column(n - 1 - k), fill: "tonexty", fillcolor: Colors.withAlpha(color, 0.16) });
      }
      points += band.values.length;
      sampled = sampled || Boolean(band.sampled);
      const customdata = band.values.map((row) => [row[0], row[2], row[n - 3], row[n - 1]]);
      out.push({
        type: "scatter", mode: band.values.length <= 1 ? "markers" : "lines", x, y: column(median), ...legendOf(part), customdata,
        name: traceName(labelOf(run), band, ranks, shared), line: { color, width: 1.5 }, marker: { color, size: 7 },
        // Ours alone, no user text: Plotly puts the (escaped) trace name beside it.
        hovertemplate: "median %{y:.4g} · 16-84%: %{customdata[1]:.4g} to %{customdata[2]:.4g} · min %{customdata[0]:.4g}, max %{customdata[3]:.4g}",
      });
    }
    return { traces: out, points, sampled };
  }

  // How many rows a horizontal legend of `names` takes in `widthPx` (an estimate: Plotly lays it out).
  function legendRows(names, widthPx) {
    let rows = names.length ? 1 : 0, used = 0;
    for (const name of names) {
      const width = 40 + 0.6 * LEGEND_FONT_PX * name.replace(/&#\d+;/g, "x").length;
      if (used && used + width > widthPx) { rows++; used = 0; }
      used += width;
    }
    return rows;
  }

  const UNITLESS = new Set(["", "1"]);
  const X_TITLES = { step: "step", time: "seconds since the run's first point", wall: "wall clock (UTC)" };

  // The layout of a chart. `chart`: {title, unit, axis, noSteps, notes, shared (attributes every
  // line has), log, legendNames, grouped (legend groups with titles), widthPx}.
  function layout(chart, theme) {
    const small = `<span style='font-size:11px;color:${theme.muted}'>`;
    let notes = chart.notes.map((note) => ` ${small}(${note})</span>`).join("");
    const shared = [...chart.shared].map(([k, v]) => `${clip(k, NAME_PART_MAX)}=${clip(v, NAME_PART_MAX)}`).join(", ");
    if (shared) notes += `<br>${small}every line: ${plotText(shared, 160)}</span>`;
    const xTitle = X_TITLES[chart.axis] + (chart.noSteps ? " (these points have no step)" : "");
    // A legend in groups (runs coloured by a parameter) puts each group's title above its entries.
    const shown = chart.legendNames.length > 1 ? legendRows(chart.legendNames, chart.widthPx - 30) * (chart.grouped ? 2 : 1) : 0;
    const rows = Math.min(LEGEND_MAX_ROWS, shown);
    const axis = { zeroline: false, gridcolor: theme.grid, linecolor: theme.line, zerolinecolor: theme.line, automargin: true };
    return {
      title: { text: plotText(chart.title) + notes, font: { size: 14 }, x: 0.02 },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { color: theme.fg },
      modebar: { bgcolor: "rgba(0,0,0,0)", color: theme.muted, activecolor: theme.fg },
      margin: { l: 55, r: 15, t: shared ? 62 : 48, b: 45 },
      xaxis: { ...axis, title: { text: xTitle }, type: chart.axis === "wall" ? "date" : "linear" },
      yaxis: { ...axis, exponentformat: "e", type: chart.log ? "log" : "linear", title: { text: UNITLESS.has(chart.unit) ? "" : plotText(chart.unit, 40) } },
      // Below the plot, across its width, so a long attribute set never covers the title; past
      // a few rows it scrolls.
      legend: { orientation: "h", x: 0, xanchor: "left", yref: "container", y: 0, yanchor: "bottom", font: { size: LEGEND_FONT_PX }, maxheight: LEGEND_MAX_ROWS * LEGEND_ROW_PX, groupclick: "togglegroup" },
      hovermode: "x unified",
      // Whole names in the hover label (they are cut to a bound before they reach Plotly):
      // Plotly's own cut counts the escaped text and could end inside an entity.
      hoverlabel: { namelength: -1, bgcolor: theme.bg, font: { color: theme.fg } },
      // A live update keeps the user's zoom: Plotly resets it only when uirevision changes.
      uirevision: `${chart.axis}:${chart.log}`,
      height: HEIGHT_PX + rows * LEGEND_ROW_PX,
    };
  }

  return { bands, layout, legendRows, lines, sharedAttributes, traceName, xAxisOf, xValues };
})();
