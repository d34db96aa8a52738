// What every page of the web view shares: fetching the API with a deadline, building DOM
// nodes, formatting numbers and times, and the page header. No framework, no build step: the
// files under static/ are served as they are.
"use strict";

const ORM = (() => {
  // Every request has a deadline: a stalled server shows as an error, never as a hung page.
  const REQUEST_DEADLINE_MS = 30000;

  async function api(path, params) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params || {})) {
      if (value === undefined || value === null) continue;
      for (const item of Array.isArray(value) ? value : [value]) query.append(key, String(item));
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_DEADLINE_MS);
    try {
      const response = await fetch(path + (query.toString() ? "?" + query : ""), { signal: controller.signal });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error || response.statusText);
      return body;
    } catch (error) {
      if (error.name === "AbortError") throw new Error(`no answer from the server within ${REQUEST_DEADLINE_MS / 1000} s`);
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  // el("a", {href: "/", class: "x"}, "text", child...): attributes set as properties when the
  // element has one (value, checked), else as attributes; children are nodes or text.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key in node && key !== "list") node[key] = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // Plotly reads every string it draws (titles, legend names, hover labels, axis titles,
  // annotations) as a subset of HTML: <a href> becomes a live link, <span style> a style, <br> a
  // break. A string a user logged (run id, metric name, attribute, tag) must reach it as text:
  // cut to `max` characters (a chart shows no more, and a megabyte-long name would stall it),
  // then with & < > " ' written as numeric entities, which Plotly shows as those characters.
  // Everything else (the DOM) gets text through el() and textContent, never HTML.
  const PLOT_TEXT_MAX = 200;
  function clip(value, max) {
    let text = String(value);
    if (text.length <= max) return text;
    text = text.slice(0, Math.max(0, max - 1));
    if (/[\uD800-\uDBFF]$/.test(text)) text = text.slice(0, -1); // not half a surrogate pair
    return text + "\u2026";
  }
  function plotText(value, max = PLOT_TEXT_MAX) {
    return clip(value, max).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  }

  function formatNumber(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value) && Math.abs(value) < 1e15) return String(value);
    const magnitude = Math.abs(value);
    if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e6)) return value.toExponential(3);
    return String(Number(value.toPrecision(4)));
  }

  function formatValue(value) {
    if (typeof value === "number") return formatNumber(value);
    if (value === null || value === undefined) return "–";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  // UTC, as the CLI prints it: 2026-01-01 12:00:00.
  function formatTime(timeUnixNano) {
    if (!timeUnixNano) return "?";
    return new Date(timeUnixNano / 1e6).toISOString().slice(0, 19).replace("T", " ");
  }

  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
    const whole = Math.max(0, Math.round(seconds));
    const hours = Math.floor(whole / 3600), minutes = Math.floor((whole % 3600) / 60), secs = whole % 60;
    if (hours) return `${hours}h${String(minutes).padStart(2, "0")}m`;
    if (minutes) return `${minutes}m${String(secs).padStart(2, "0")}s`;
    return `${secs}s`;
  }

  function runDuration(run) {
    if (typeof run.duration_s === "number") return run.duration_s;
    return (run.end_time_unix_nano - run.start_time_unix_nano) / 1e9;
  }

  function runLabel(run) {
    const id = run.run === null || run.run === undefined ? "(none)" : String(run.run);
    return run.name ? `${run.name} (${id})` : id;
  }

  // The URL form of a run id: the empty string is the "(none)" run (points without a run id).
  function runKey(run) {
    return run.run === null || run.run === undefined ? "" : String(run.run);
  }

  function formatRanks(ranks) {
    const numbers = (ranks || []).filter(Number.isInteger).sort((a, b) => a - b);
    const parts = [];
    for (let i = 0; i < numbers.length; ) {
      let j = i;
      while (j + 1 < numbers.length && numbers[j + 1] === numbers[j] + 1) j++;
      parts.push(i === j ? String(numbers[i]) : `${numbers[i]}-${numbers[j]}`);
      i = j + 1;
    }
    return parts.join(",") || "–";
  }

  function statusBadge(status) {
    return el("span", { class: `status status-${status || "unknown"}` }, status || "–");
  }

  function header(active) {
    const link = (href, text, name) => el("a", { href, class: name === active ? "active" : null }, text);
    const storeInfo = el("span", { class: "store", id: "store-path" });
    const nav = el("nav", {}, link("/", "Runs", "runs"), link("/compare", "Compare", "compare"), link("/params", "Parameters", "params"));
    const bar = el("header", {}, el("strong", {}, "otel-recursive-metrics"), nav, storeInfo);
    document.body.prepend(bar);
    api("/api/info").then((info) => { storeInfo.textContent = `${info.store} · read-only · v${info.version}`; }, () => {});
  }

  function setStatus(text, isError) {
    const node = document.getElementById("status");
    if (!node) return;
    node.textContent = text;
    node.classList.toggle("error", Boolean(isError));
  }

  function pageParams() {
    return new URLSearchParams(window.location.search);
  }

  // How often live pages ask for news: ?refresh=SECONDS (0 turns it off), default 1 s.
  function refreshMs() {
    const value = Number(pageParams().get("refresh"));
    return pageParams().has("refresh") && isFinite(value) ? Math.max(0, value * 1000) : 1000;
  }

  // Host, process and GPU metrics: listed after the training ones.
  const SYSTEM_PREFIXES = ["system.", "process.", "hw."];
  function isSystem(name) { return SYSTEM_PREFIXES.some((p) => name.startsWith(p)); }
  function byTrainingFirst(a, b) { return isSystem(a) - isSystem(b) || a.localeCompare(b); }

  // The section a metric's chart goes in: its name up to the first dot (train.loss -> train), as
  // TensorBoard groups its tags; a name without a dot goes under "other".
  const SECTION_MAX = 60;
  function sectionOf(metric) {
    const dot = metric.indexOf(".");
    return dot > 0 ? clip(metric.slice(0, dot), SECTION_MAX) : "other";
  }

  // The page's colours follow the system's light or dark setting (style.css holds both); charts
  // read them here, and are drawn again when the setting changes.
  const darkQuery = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  function theme() {
    const css = getComputedStyle(document.documentElement);
    const read = (name) => css.getPropertyValue(name).trim();
    return { dark: Boolean(darkQuery && darkQuery.matches), fg: read("--fg"), muted: read("--muted"), line: read("--line"), grid: read("--grid"), bg: read("--bg") };
  }
  function onThemeChange(callback) {
    if (darkQuery) darkQuery.addEventListener("change", () => callback(theme()));
  }

  // A run's parameter by key ("optimizer.lr"), undefined when it has none.
  function paramOf(run, key) {
    const params = run.params || {};
    return Object.prototype.hasOwnProperty.call(params, key) ? params[key] : undefined;
  }

  // Marks for tests and the benchmark: when the page first showed its data.
  const marks = (window.__orm = window.__orm || { updates: 0 });
  function mark(name) {
    if (marks[name] === undefined) marks[name] = performance.now();
  }

  // Plotly's bundle (4.6 MB) is loaded by the script that needs it, after that script has sent its
  // first requests: the browser compiles the bundle (most of a cold first visit) while the
  // server reads the data, instead of before the page can ask for anything.
  let plotly = null;
  function loadPlotly() {
    if (!plotly) {
      plotly = window.Plotly ? Promise.resolve(window.Plotly) : new Promise((resolve, reject) => {
        const script = el("script", { src: "/static/plotly.min.js", async: true });
        script.addEventListener("load", () => resolve(window.Plotly));
        script.addEventListener("error", () => reject(new Error("could not load /static/plotly.min.js (is the plotly package installed?)")));
        document.head.append(script);
      });
    }
    return plotly;
  }

  return {
    api, loadPlotly, el, clip, plotText, PLOT_TEXT_MAX, formatNumber, formatValue, formatTime, formatDuration, formatRanks, runDuration, runLabel, runKey,
    statusBadge, header, setStatus, pageParams, refreshMs, mark, marks, isSystem, byTrainingFirst, sectionOf, theme, onThemeChange, paramOf,
  };
})();
