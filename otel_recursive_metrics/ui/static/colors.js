// Colours of runs: one per run in order, or by the value of a parameter ("colour by lr"), as W&B
// and MLflow offer: runs that share a value share a colour and a legend group. Numbers run along
// a ramp (on a log scale when they span a factor of ten or more, as learning rates do); other
// values get a colour each.
"use strict";

const Colors = (() => {
  const { formatValue, paramOf } = ORM;
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  // Readable on the light and the dark theme alike: blue, cyan, green, yellow, orange, red.
  const RAMP = ["#3b82f6", "#06b6d4", "#22c55e", "#eab308", "#f97316", "#ef4444"];
  const MISSING = "#9ca3af";

  function hex(color) { return [1, 3, 5].map((i) => parseInt(color.slice(i, i + 2), 16)); }

  // The colour at t in [0, 1] along RAMP.
  function ramp(t) {
    const x = Math.min(1, Math.max(0, t)) * (RAMP.length - 1);
    const i = Math.min(RAMP.length - 2, Math.floor(x));
    const [a, b] = [hex(RAMP[i]), hex(RAMP[i + 1])];
    return "#" + a.map((v, k) => Math.round(v + (b[k] - v) * (x - i)).toString(16).padStart(2, "0")).join("");
  }

  // A colour with an opacity: "#1f77b4" -> "rgba(31,119,180,0.2)".
  function withAlpha(color, alpha) { return `rgba(${hex(color).join(",")},${alpha})`; }

  // Per run key: {color, group, label, value}. Without a key, colours in the runs' order and no
  // group; with one, by the run's value of that parameter (label "lr=0.1", "lr not set").
  function assign(runs, key) {
    const out = new Map();
    if (!key) {
      runs.forEach((run, i) => out.set(ORM.runKey(run), { color: PALETTE[i % PALETTE.length], group: null, label: null, value: undefined }));
      return out;
    }
    const values = runs.map((run) => paramOf(run, key));
    const set = values.filter((v) => v !== undefined);
    const numeric = set.length > 0 && set.every((v) => typeof v === "number" && isFinite(v));
    let position;
    if (numeric) {
      const logScale = set.every((v) => v > 0) && Math.max(...set) / Math.min(...set) >= 10;
      const f = logScale ? Math.log : (v) => v;
      const lo = Math.min(...set.map(f)), hi = Math.max(...set.map(f));
      position = (v) => (hi > lo ? (f(v) - lo) / (hi - lo) : 0.5);
    } else {
      const distinct = [...new Set(set.map((v) => JSON.stringify(v)))].sort();
      position = (v) => distinct.indexOf(JSON.stringify(v));
    }
    runs.forEach((run, i) => {
      const value = values[i];
      const label = value === undefined ? `${key} not set` : `${key}=${formatValue(value)}`;
      const color = value === undefined ? MISSING : numeric ? ramp(position(value)) : PALETTE[position(value) % PALETTE.length];
      out.set(ORM.runKey(run), { color, group: label, label, value });
    });
    return out;
  }

  // Order for runs coloured by a parameter: by its value (numbers as numbers), unset last.
  function byValue(a, b) {
    if (a.value === b.value) return 0;
    if (a.value === undefined) return 1;
    if (b.value === undefined) return -1;
    if (typeof a.value === "number" && typeof b.value === "number") return a.value - b.value;
    return JSON.stringify(a.value).localeCompare(JSON.stringify(b.value));
  }

  return { PALETTE, MISSING, assign, byValue, ramp, withAlpha };
})();
