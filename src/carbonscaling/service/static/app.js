// carbonscaling calculator page: fills the form from the API's catalogs, posts /api/estimate,
// renders numbers and small SVG charts, and keeps the inputs in the URL (shareable).
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const FIELDS = ["model", "preset", "d_model", "model_yaml", "device", "years_ahead", "region", "ci",
                "deadline_days", "precision", "objective", "pue", "lifetime_years"];
const STEP_PARTS = [["compute_s", "compute", "#4c72b0"], ["bubble_s", "pipeline bubble", "#dd8452"],
  ["tp_comm_s", "TP comm", "#55a868"], ["cp_comm_s", "CP comm", "#64b5cd"], ["pp_comm_s", "PP comm", "#c44e52"],
  ["dp_comm_s", "DP comm", "#8172b3"], ["ep_comm_s", "EP comm", "#937860"], ["optimizer_s", "optimizer", "#da8bc3"],
  ["overlap_slowdown_s", "overlap slowdown", "#8c8c8c"], ["host_s", "host launch wait", "#ccb974"],
  ["offload_s", "CPU offload", "#a6761d"]];
const MEM_PARTS = [["weights_gb", "weights", "#4c72b0"], ["grads_gb", "gradients", "#55a868"],
  ["optimizer_gb", "optimizer", "#dd8452"], ["activations_gb", "activations", "#c44e52"]];

function fmt(x, digits = 4) {
  if (x === null || x === undefined || !isFinite(x)) return "n/a";
  const a = Math.abs(x);
  if (a !== 0 && (a >= 1e9 || a < 1e-3)) return x.toExponential(digits - 1).replace("e+", "e");
  if (a >= 1e4) return Math.round(x).toLocaleString("en-US");
  return Number(x.toPrecision(digits)).toLocaleString("en-US", {maximumFractionDigits: 6});
}

function setOut(id, value, text) {
  const el = $(id);
  el.dataset.value = String(value);
  el.textContent = text === undefined ? fmt(value) : text;
}

function option(select, value, label) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = label || value;
  select.appendChild(o);
}

async function getJSON(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

async function loadCatalogs() {
  const [opts, models, devices, regions] = await Promise.all(
    ["/api/options", "/api/models", "/api/devices", "/api/regions"].map(getJSON));
  for (const m of models) option($("model"), m.name, `${m.name} (${fmt(m.params_total, 3)} params)`);
  for (const p of opts.presets) option($("preset"), p);
  for (const d of devices) option($("device"), d.name, `${d.name} (${fmt(d.peak_tflops, 3)} TFLOP/s, ${fmt(d.hbm_gb, 3)} GB)`);
  option($("region"), "", "default intensity (data/power.yaml)");
  for (const r of regions) option($("region"), r.region, `${r.region}: ${r.location} (${fmt(r.ci_g_per_kwh, 3)} g/kWh)`);
  for (const p of opts.precisions) option($("precision"), p);
  for (const o of opts.objectives) option($("objective"), o);
  $("model").value = models.some((m) => m.name === "llama3.1-405b") ? "llama3.1-405b" : models[0].name;
  $("device").value = devices.some((d) => d.name === "H100") ? "H100" : devices[0].name;
}

function modelSource() {
  return document.querySelector("input[name=model_src]:checked").value;
}

function showSource() {
  const src = modelSource();
  for (const div of document.querySelectorAll("[data-src]")) div.hidden = div.dataset.src !== src;
}

// The request body from the form: only what the user set (the API has the defaults).
function request() {
  const src = modelSource();
  const body = {};
  if (src === "catalog") body.model = $("model").value;
  if (src === "preset") { body.preset = $("preset").value; body.d_model = Number($("d_model").value); }
  if (src === "yaml") body.model_yaml = $("model_yaml").value;
  body.device = $("device").value;
  const num = (id) => ($(id).value.trim() === "" ? undefined : Number($(id).value));
  for (const id of ["years_ahead", "deadline_days", "pue", "lifetime_years"]) {
    const v = num(id);
    if (v !== undefined) body[id] = v;
  }
  if ($("ci").value.trim() !== "") body.ci = Number($("ci").value);
  else if ($("region").value) body.region = $("region").value;
  body.precision = $("precision").value;
  body.objective = $("objective").value;
  if (!$("include_embodied").checked) body.include_embodied = false;
  return body;
}

function toURL(body) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(body)) q.set(k, String(v));
  return `${location.origin}${location.pathname}?${q}`;
}

function fromURL() {
  const q = new URLSearchParams(location.search);
  if (![...q.keys()].length) return false;
  const src = q.has("model_yaml") ? "yaml" : (q.has("preset") ? "preset" : "catalog");
  document.querySelector(`input[name=model_src][value=${src}]`).checked = true;
  showSource();
  for (const k of FIELDS) if (q.has(k)) $(k).value = q.get(k);
  if (q.has("include_embodied")) $("include_embodied").checked = q.get("include_embodied") !== "false";
  return true;
}

function el(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// One horizontal stacked bar with a legend: parts = [[label, value, colour], ...].
function stackedBar(target, parts, unit, capacity) {
  const W = 360, barH = 22, legendH = 16 * parts.length, H = barH + 14 + legendH;
  const total = parts.reduce((s, p) => s + Math.max(0, p[1]), 0);
  const scale = Math.max(total, capacity || 0) || 1;
  const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img"});
  let x = 0;
  for (const [label, v, colour] of parts) {
    const w = (Math.max(0, v) / scale) * W;
    const r = el("rect", {x, y: 0, width: Math.max(w, 0), height: barH, fill: colour});
    r.appendChild(el("title", {}, `${label}: ${fmt(v)} ${unit}`));
    svg.appendChild(r);
    x += w;
  }
  if (capacity) {
    const cx = (capacity / scale) * W;
    svg.appendChild(el("line", {x1: cx, x2: cx, y1: -2, y2: barH + 4, stroke: "#000", "stroke-width": 2, "stroke-dasharray": "3 2"}));
  }
  parts.forEach(([label, v, colour], i) => {
    const y = barH + 14 + 16 * i;
    svg.appendChild(el("rect", {x: 0, y: y - 10, width: 10, height: 10, fill: colour}));
    const share = total > 0 ? ` (${(100 * v / total).toFixed(1)} %)` : "";
    svg.appendChild(el("text", {x: 16, y, "font-size": 11}, `${label}: ${fmt(v)} ${unit}${share}`));
  });
  if (capacity) svg.appendChild(el("text", {x: W, y: barH + 12, "font-size": 10, "text-anchor": "end"}, `capacity ${fmt(capacity)} ${unit}`));
  target.replaceChildren(svg);
}

// Vertical bars for operational and embodied (stacked parts) and the total with its range whisker.
function carbonChart(target, c, b) {
  const W = 360, H = 190, top = 12, bottom = 150, left = 40;
  // The measured power model (default) and the papers' formula name their operational parts differently.
  const opParts = b.device_tco2e !== undefined
    ? [["device", b.device_tco2e, "#4c72b0"], ["host", b.host_tco2e, "#6d8fcf"],
       ["power conversion", b.power_conversion_tco2e, "#8aa6d8"], ["cooling", b.cooling_tco2e, "#9db4e0"],
       ["network", b.network_tco2e, "#c9d6f0"]]
    : [["device static", b.device_static_tco2e, "#4c72b0"], ["device dynamic", b.device_dynamic_tco2e, "#6d8fcf"],
       ["node other", b.node_other_tco2e, "#9db4e0"], ["network", b.network_tco2e, "#c9d6f0"]];
  const embParts = [["accelerator", b.embodied_accelerator_tco2e, "#dd8452"], ["CPU", b.embodied_cpu_tco2e, "#e8a87c"],
    ["DRAM", b.embodied_dram_tco2e, "#f0c4a4"], ["SSD", b.embodied_ssd_tco2e, "#f7dcc8"],
    ["infrastructure", b.embodied_infrastructure_tco2e, "#b5651d"]];
  const max = Math.max(c.total_high_tco2e || 0, c.total_tco2e) || 1;
  const y = (v) => bottom - (v / max) * (bottom - top);
  const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img"});
  svg.appendChild(el("line", {x1: left, x2: W, y1: bottom, y2: bottom, stroke: "#666"}));
  svg.appendChild(el("text", {x: left - 4, y: top + 4, "font-size": 10, "text-anchor": "end"}, fmt(max, 3)));
  svg.appendChild(el("text", {x: left - 4, y: bottom, "font-size": 10, "text-anchor": "end"}, "0"));
  const bars = [["operational", opParts], ["embodied", embParts], ["total", [["operational", c.operational_tco2e, "#4c72b0"], ["embodied", c.embodied_tco2e, "#dd8452"]]]];
  bars.forEach(([name, parts], i) => {
    const x = left + 20 + i * 105, w = 60;
    let base = 0;
    for (const [label, v, colour] of parts) {
      const val = Math.max(0, v || 0);
      const r = el("rect", {x, y: y(base + val), width: w, height: y(base) - y(base + val), fill: colour});
      r.appendChild(el("title", {}, `${name} / ${label}: ${fmt(val)} tCO2e`));
      svg.appendChild(r);
      base += val;
    }
    svg.appendChild(el("text", {x: x + w / 2, y: bottom + 14, "font-size": 11, "text-anchor": "middle"}, name));
    svg.appendChild(el("text", {x: x + w / 2, y: bottom + 28, "font-size": 10, "text-anchor": "middle",
                                "data-bar": name, "data-value": base}, fmt(base)));
    if (name === "total" && c.total_low_tco2e !== null) {
      const cx = x + w / 2;
      svg.appendChild(el("line", {x1: cx, x2: cx, y1: y(c.total_low_tco2e), y2: y(c.total_high_tco2e), stroke: "#000", "stroke-width": 1.5}));
      for (const v of [c.total_low_tco2e, c.total_high_tco2e]) svg.appendChild(el("line", {x1: cx - 8, x2: cx + 8, y1: y(v), y2: y(v), stroke: "#000", "stroke-width": 1.5}));
    }
  });
  target.replaceChildren(svg);
}

// One-at-a-time sensitivity: a bar from the total at the input's low to its high value.
function tornado(target, rows, total) {
  const W = 480, rowH = 20, left = 160, H = rowH * rows.length + 24;
  const lo = Math.min(total, ...rows.map((r) => Math.min(r.total_at_low_tco2e, r.total_at_high_tco2e)));
  const hi = Math.max(total, ...rows.map((r) => Math.max(r.total_at_low_tco2e, r.total_at_high_tco2e)));
  const x = (v) => left + ((v - lo) / ((hi - lo) || 1)) * (W - left - 10);
  const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img"});
  rows.forEach((r, i) => {
    const a = x(Math.min(r.total_at_low_tco2e, r.total_at_high_tco2e)), b = x(Math.max(r.total_at_low_tco2e, r.total_at_high_tco2e));
    const y = 4 + i * rowH;
    const name = r.input.replace(/_/g, " ");
    svg.appendChild(el("text", {x: left - 6, y: y + 12, "font-size": 11, "text-anchor": "end"},
      name.length > 26 ? `${name.slice(0, 25)}…` : name));
    const bar = el("rect", {x: a, y, width: Math.max(1, b - a), height: rowH - 6, fill: "#8172b3"});
    bar.appendChild(el("title", {}, `${r.input}: ${fmt(r.total_at_low_tco2e)} .. ${fmt(r.total_at_high_tco2e)} tCO2e`));
    svg.appendChild(bar);
  });
  svg.appendChild(el("line", {x1: x(total), x2: x(total), y1: 0, y2: H - 20, stroke: "#000", "stroke-dasharray": "3 2"}));
  svg.appendChild(el("text", {x: left, y: H - 4, "font-size": 10}, fmt(lo)));
  svg.appendChild(el("text", {x: W - 10, y: H - 4, "font-size": 10, "text-anchor": "end"}, `${fmt(hi)} tCO2e`));
  target.replaceChildren(svg);
}

// Pareto front: duration (x, log) against total carbon (y); front points filled and joined.
function frontChart(target, rows) {
  const W = 560, H = 240, L = 60, R = 12, T = 10, B = 36;
  const xs = rows.map((r) => r.duration_days), ys = rows.map((r) => r.total_tco2e);
  const x0 = Math.log10(Math.min(...xs) * 0.9), x1 = Math.log10(Math.max(...xs) * 1.1);
  const y0 = Math.min(...ys) * 0.98, y1 = Math.max(...ys) * 1.02;
  const X = (v) => L + ((Math.log10(v) - x0) / ((x1 - x0) || 1)) * (W - L - R);
  const Y = (v) => H - B - ((v - y0) / ((y1 - y0) || 1)) * (H - T - B);
  const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img"});
  svg.appendChild(el("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#666"}));
  svg.appendChild(el("line", {x1: L, x2: L, y1: T, y2: H - B, stroke: "#666"}));
  const front = rows.filter((r) => r.on_front).sort((a, b) => a.duration_days - b.duration_days);
  if (front.length > 1) {
    svg.appendChild(el("polyline", {points: front.map((r) => `${X(r.duration_days)},${Y(r.total_tco2e)}`).join(" "),
      fill: "none", stroke: "#2f6f4f", "stroke-width": 1.5}));
  }
  for (const r of rows) {
    const c = el("circle", {cx: X(r.duration_days), cy: Y(r.total_tco2e), r: 4.5,
      fill: r.on_front ? "#2f6f4f" : "#fff", stroke: "#2f6f4f", "stroke-width": 1.5, class: "front-point"});
    c.appendChild(el("title", {}, `${fmt(r.duration_days)} days, ${fmt(r.total_tco2e)} tCO2e, ${r.devices.toLocaleString("en-US")} devices (${r.sweep}): ${r.layout}`));
    svg.appendChild(c);
  }
  for (const v of [Math.min(...xs), Math.max(...xs)]) svg.appendChild(el("text", {x: X(v), y: H - B + 14, "font-size": 10, "text-anchor": "middle"}, fmt(v, 3)));
  svg.appendChild(el("text", {x: (L + W) / 2, y: H - 4, "font-size": 11, "text-anchor": "middle"}, "training duration (days, log scale)"));
  for (const v of [y0, y1]) svg.appendChild(el("text", {x: L - 4, y: Y(v) + 4, "font-size": 10, "text-anchor": "end"}, fmt(v, 3)));
  svg.appendChild(el("text", {x: 12, y: (T + H - B) / 2, "font-size": 11, "text-anchor": "middle", transform: `rotate(-90 12 ${(T + H - B) / 2})`}, "tCO2e"));
  target.replaceChildren(svg);
}

async function showFront() {
  const body = {...request(), points: 6};
  delete body.objective;
  $("front").disabled = true;
  $("front-status").textContent = "searching 12 runs...";
  try {
    const r = await fetch("/api/front/deadline", {method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(body)});
    const d = await r.json();
    if (!r.ok) { $("front-status").textContent = d.error || `HTTP ${r.status}`; return; }
    if (d.feasible === false || !d.rows || !d.rows.length) { $("front-status").textContent = d.reason || "no feasible point"; return; }
    frontChart($("chart-front"), d.rows);
    const n = d.rows.filter((x) => x.on_front).length;
    $("front-status").textContent = `${d.rows.length} runs, ${n} on the front (filled); hover a point for its layout.` +
      (d.skipped.length ? ` ${d.skipped.length} had no answer.` : "");
    document.body.dataset.front = "done";
  } finally {
    $("front").disabled = false;
  }
}

function render(d) {
  const m = d.model, lay = d.layout, perf = d.performance, c = d.carbon, hw = d.hardware;
  $("title").textContent = `${m.name} (${fmt(m.params_total, 3)} parameters, ${fmt(m.tokens, 3)} tokens) on ${hw.name}`;
  setOut("out-total", c.total_tco2e);
  setOut("out-total-low", c.total_low_tco2e);
  setOut("out-total-high", c.total_high_tco2e);
  setOut("out-operational", c.operational_tco2e);
  setOut("out-embodied", c.embodied_tco2e);
  setOut("out-energy", d.energy_kwh / 1000);
  setOut("out-devices", lay.devices, lay.devices.toLocaleString("en-US"));
  setOut("out-days", perf.duration_days);
  setOut("out-mfu", perf.mfu, perf.mfu.toFixed(3));
  setOut("out-step", perf.step_time_s);
  const cols = [["devices", "devices"], ["tp", "TP"], ["pp", "PP"], ["dp", "DP"], ["ep", "EP"], ["zero", "ZeRO"],
    ["microbatch", "microbatch"], ["vp", "VP"], ["recompute", "recompute"],
    ["global_batch_sequences", "global batch"], ["microbatches", "microbatches"]];
  if (lay.vp === undefined) lay.vp = lay.interleave;  // Megatron-Core's name for interleaving
  const head = $("layout").tHead.rows[0], row = $("layout").tBodies[0].rows[0];
  head.replaceChildren(...cols.map(([, label]) => Object.assign(document.createElement("th"), {textContent: label})));
  row.replaceChildren(...cols.map(([k]) => {
    const td = document.createElement("td");
    td.id = `layout-${k}`;
    td.dataset.value = String(lay[k]);
    td.textContent = typeof lay[k] === "number" ? lay[k].toLocaleString("en-US") : lay[k];
    return td;
  }));
  const step = d.breakdown.step;
  stackedBar($("chart-step"), STEP_PARTS.map(([k, label, col]) => [label, step[k], col]).filter((p) => p[1] > 0), "s");
  const mem = d.breakdown.memory_per_device;
  stackedBar($("chart-memory"), MEM_PARTS.map(([k, label, col]) => [label, mem[k], col]), "GB", mem.capacity_gb);
  carbonChart($("chart-carbon"), c, d.breakdown.carbon);
  const missed = perf.meets_deadline ? "" : ` The pinned layout takes ${fmt(perf.duration_days)} days, past the deadline.`;
  const band = d.uncertainty && d.uncertainty.bands && d.uncertainty.bands.total_tco2e;
  $("band-row").hidden = !band;
  if (band) { setOut("out-band-p5", band.p5); setOut("out-band-p95", band.p95); }
  const sens = (d.uncertainty && d.uncertainty.sensitivity) || [];
  $("sensitivity-fig").hidden = !sens.length;
  if (sens.length) tornado($("chart-sensitivity"), sens.slice(0, 6), c.total_tco2e);
  const inputs = (d.uncertainty && d.uncertainty.inputs) || {};
  $("sensitivity-pool").textContent = Object.entries(inputs).filter(([, m]) => m.pool)
    .map(([k, m]) => `${k} drawn from: ${m.pool.line}.`).join(" ");
  $("chart-front").replaceChildren();
  const cb = d.breakdown.carbon;
  $("sources").textContent = `Grid intensity ${fmt(cb.ci_g_per_kwh)} g/kWh (${c.ci_source}), PUE ${fmt(cb.pue)}, ` +
    `embodied: ${c.embodied_mode} mode. Total range: embodied carbon low..high (docs/carbon.md). ` +
    `${perf.layouts_evaluated.toLocaleString("en-US")} layouts evaluated.${missed}`;
}

async function submit(ev) {
  if (ev) ev.preventDefault();
  const body = request();
  const url = toURL(body);
  history.replaceState(null, "", url);
  $("share").value = url;
  $("error").hidden = true;
  $("infeasible").hidden = true;
  $("status").textContent = "searching layouts...";
  $("submit").disabled = true;
  document.body.dataset.state = "busy";
  try {
    const r = await fetch("/api/estimate", {method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(body)});
    const d = await r.json();
    if (!r.ok) {
      $("answer").hidden = true;
      $("error").textContent = d.error || `HTTP ${r.status}`;
      $("error").hidden = false;
      $("status").textContent = "";
      document.body.dataset.state = "error";
      return;
    }
    if (d.feasible === false) {
      $("answer").hidden = true;
      $("infeasible").textContent = `No answer (binding constraint: ${d.constraint}): ${d.reason}`;
      $("infeasible").hidden = false;
      $("status").textContent = "";
      document.body.dataset.state = "infeasible";
      return;
    }
    render(d);
    $("json").href = URL.createObjectURL(new Blob([JSON.stringify(d, null, 2)], {type: "application/json"}));
    $("answer").hidden = false;
    $("status").textContent = "";
    document.body.dataset.state = "done";
  } catch (err) {
    $("error").textContent = `request failed: ${err.message}`;
    $("error").hidden = false;
    document.body.dataset.state = "error";
  } finally {
    $("submit").disabled = false;
  }
}

async function main() {
  for (const r of document.querySelectorAll("input[name=model_src]")) r.addEventListener("change", showSource);
  $("form").addEventListener("submit", submit);
  $("front").addEventListener("click", showFront);
  $("copy").addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText($("share").value));
  try {
    await loadCatalogs();
  } catch (err) {
    $("error").textContent = `could not load the catalogs: ${err.message}`;
    $("error").hidden = false;
    return;
  }
  document.body.dataset.state = "ready";
  if (fromURL()) submit();
}

main();
