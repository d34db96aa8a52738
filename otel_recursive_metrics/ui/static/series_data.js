// The series a page holds, kept up to date from /api/series answers, and the smoothing of a line.
//
// A first answer sets a series; an update (after_id) appends to its traces, key by key. A trace
// grown past several times what a chart can show is cut back (min and max per bucket, as the
// server does); a histogram's distribution is thinned instead (every other band point kept:
// bands cannot be merged here, the server merges them from the buckets).
"use strict";

const SeriesData = (() => {
  const FIELDS = ["step", "time_ms", "value"];

  // Keep the lowest and highest of each of max/2 buckets: what the server does.
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
      for (const i of keep) for (const field of FIELDS) out[field].push(trace[field][i]);
    }
    Object.assign(trace, out);
    trace.downsampled = true;
  }

  function thin(band) {
    for (const field of ["step", "time_ms", "values"]) band[field] = band[field].filter((_, i) => i % 2 === 1 || i === band[field].length - 1);
    band.sampled = true;
  }

  class Store {
    constructor() {
      this.lastId = null;
      this.series = new Map(); // "run\0metric" -> {run, metric, unit, kind, traces: Map(key -> trace), distribution}
    }
    static id(run, metric) { return run + "\u0000" + metric; }
    get(run, metric) { return this.series.get(Store.id(run, metric)); }
    // The unit and kind of a metric, from any run that has it.
    about(metric) {
      for (const entry of this.series.values()) if (entry.metric === metric && entry.kind) return { unit: entry.unit || "", kind: entry.kind };
      return { unit: "", kind: "" };
    }
    // Store an answer's series; with append, add their points to what is held. Returns the
    // number of points added.
    merge(list, append, max) {
      let added = 0;
      for (const s of list) {
        const id = Store.id(s.run, s.metric);
        let entry = this.series.get(id);
        if (!entry || !append) {
          entry = { run: s.run, metric: s.metric, unit: s.unit || "", kind: s.kind || "", traces: new Map(), distribution: null };
          this.series.set(id, entry);
        }
        for (const t of s.traces) {
          added += t.value.length;
          const held = entry.traces.get(t.key);
          if (!held) { entry.traces.set(t.key, t); continue; }
          for (const field of FIELDS) for (const v of t[field]) held[field].push(v);
          held.downsampled = held.downsampled || t.downsampled;
          if (held.value.length > 4 * max) compact(held, max);
        }
        if (s.distribution) this.mergeBands(entry, s.distribution, max);
      }
      return added;
    }
    mergeBands(entry, distribution, max) {
      if (!entry.distribution) entry.distribution = { percentiles: distribution.percentiles, traces: new Map() };
      for (const band of distribution.traces) {
        const held = entry.distribution.traces.get(band.key);
        if (!held) { entry.distribution.traces.set(band.key, band); continue; }
        for (const field of ["step", "time_ms", "values"]) for (const v of band[field]) held[field].push(v);
        held.sampled = held.sampled || band.sampled;
        while (held.values.length > max) thin(held);
      }
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

  return { Store, compact, ema, trailingMean, smooth };
})();
