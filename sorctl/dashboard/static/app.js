// sorctl dashboard: polls the server's JSON and draws with plotly.js (served by sorctl itself).
"use strict";

const POLL_MS = 1000;
const CLUSTER_POLL_MS = 2500;
const state = {
  current: null,      // feed id shown
  pinned: false,      // the user picked a solve: do not follow the newest
  offset: 0,
  start: null, done: null, failed: null,
  points: [],         // {t, iteration, residual}
  events: [],         // node_lost, block_moved, x_recovered, placed, omega, recheck
  workers: {},        // slot -> summed figures over the rounds
  lastRound: null,
  lost: new Set(),    // node addresses a solve lost
};
window.sorctlDashboard = state;  // read by the browser tests

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "style" || k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}
const badge = (text) => el("span", {class: "badge " + text}, text);
const fmt = (x, d = 3) => (x === null || x === undefined) ? "-" : (typeof x === "number" ? (Math.abs(x) < 1e-3 && x !== 0 ? x.toExponential(2) : +x.toFixed(d)) : String(x));
const bytes = (b) => b >= 1e9 ? (b / 1e9).toFixed(2) + " GB" : b >= 1e6 ? (b / 1e6).toFixed(1) + " MB" : b >= 1e3 ? (b / 1e3).toFixed(1) + " kB" : b + " B";
const machine = (slot) => String(slot).split("#")[0];

async function getJSON(path) {
  const r = await fetch(path, {cache: "no-store", credentials: "same-origin"});
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

// ---- clusters ------------------------------------------------------------------------------
function containerBox(c, cpus) {
  const lost = state.lost.has(c.address) && c.role === "node";
  const cls = ["box", c.role, c.state, c.health, lost ? "lost" : ""].join(" ");
  const box = el("div", {class: cls, "data-name": c.name, "data-role": c.role},
    el("div", {}, el("span", {class: "role"}, c.role + (c.role === "node" || c.role === "relay" ? " " + c.name.split("-").pop() : "")), " ",
      badge(c.state), " ", c.health ? badge(c.health) : null, lost ? " " : null, lost ? badge("lost") : null),
    el("div", {class: "muted"}, c.address || "no address"));
  if (c.role === "node") {
    box.append(el("div", {class: "cpus"}, cpus > 0 ? `${cpus} CPU${cpus > 1 ? "s" : ""} counted by the scheduler` : "not counted by the scheduler"));
    const share = lost ? null : nodeShare(c.address);  // a lost node's last figures are old
    if (share) box.append(share);
  }
  if (c.role === "scheduler") box.append(el("div", {}, "clients: port 9702"));
  return box;
}

// This node's sweep / wait / check split in the latest round of the shown solve.
function nodeShare(address) {
  if (!state.lastRound || state.done || state.failed) return null;
  let sweep = 0, wait = 0, check = 0;
  for (const [slot, w] of Object.entries(state.lastRound.workers || {})) {
    if (machine(slot) !== address) continue;
    sweep += w.sweep_s || 0; wait += w.wait_s || 0; check += w.residual_s || 0;
  }
  const total = sweep + wait + check;
  if (!total) return null;
  const pct = (x) => (100 * x / total).toFixed(0) + "%";
  return el("div", {title: `sweep ${pct(sweep)}, wait ${pct(wait)}, residual ${pct(check)} of the last second`},
    el("div", {class: "bar"}, el("div", {class: "sweep", style: `width:${pct(sweep)}`}),
      el("div", {class: "wait", style: `width:${pct(wait)}`}), el("div", {class: "check", style: `width:${pct(check)}`})));
}
function renderCluster(c) {
  const cpus = Object.fromEntries((c.nodes || []).map((n) => [n.name, n.scheduler_cpus]));
  const nets = c.networks || [];
  const primary = (ct) => Object.keys(ct.networks || {})[0];
  const columns = [];
  for (const net of nets) {
    const members = c.containers.filter((ct) => ct.role !== "router" && primary(ct) === net.name);
    const col = el("div", {class: "net", "data-network": net.name},
      el("div", {class: "net-title"}, `${net.name} `, el("span", {class: "muted"}, `${net.role} ${net.subnet}`)));
    for (const ct of members) col.append(containerBox(ct, cpus[ct.name] || 0));
    columns.push(col);
  }
  const router = c.containers.find((ct) => ct.role === "router");
  const topo = el("div", {class: "topology"});
  columns.forEach((col, i) => {
    topo.append(col);
    if (router && i === 0 && columns.length > 1) {
      topo.append(el("div", {class: "router box " + router.state, "data-role": "router"},
        el("div", {class: "role"}, "router"), badge(router.state),
        el("div", {class: "muted"}, "forwards between subnets")));
    }
  });
  const k = c.connect || {};
  const shape = c.shape ? `${c.nodes.length} nodes, ${c.shape.relay ? `relay layout, ${c.shape.subnets} remote subnet(s)` : "one network"}${c.shape.tls ? ", TLS" : ""}` : "incomplete";
  const counted = (c.nodes || []).filter((n) => n.scheduler_cpus > 0).length;
  return el("div", {class: "cluster", "data-cluster": c.name},
    el("div", {class: "cluster-head"}, el("h3", {}, c.name), el("span", {}, shape),
      el("span", {}, `scheduler counts ${counted} of ${(c.nodes || []).length} nodes, ${c.scheduler_cpus} CPUs`)),
    topo,
    el("div", {class: "connect"}, "Connect a client: ", el("code", {}, `${k.scheduler_address}:${k.scheduler_port}`),
      " from network ", el("code", {}, k.network || "-"), k.routes ? " with routes " : null, k.routes ? el("code", {}, k.routes) : null,
      ", secret ", el("code", {}, k.secret_file || "-"), k.tls ? ", TLS certificate " : null, k.tls ? el("code", {}, k.cert_file) : null,
      " (or just ", el("code", {}, `sorctl solve FILE --cluster ${c.name}`), ")"));
}

// A cluster across Docker hosts: one box per host (its endpoint, reachable or not, its
// containers; the node's CPUs as the scheduler counts them; its firewall rules), side by side.
function renderMultihost(c) {
  const topo = el("div", {class: "topology"});
  for (const h of c.hosts || []) {
    const box = el("div", {class: "host net" + (h.reachable ? "" : " unreachable"), "data-host": h.endpoint},
      el("div", {class: "net-title"}, `${h.endpoint} `, badge(h.reachable ? "reachable" : "unreachable"),
        h.scheduler ? el("span", {class: "muted"}, " scheduler's host") : null),
      el("div", {class: "muted"}, h.address ? `dispy address ${h.address}` : "address not recorded"));
    if (!h.reachable) box.append(el("div", {class: "error"}, h.error || "does not answer"));
    for (const ct of h.containers || []) box.append(containerBox({...ct, address: h.address}, ct.cpus || 0));
    if (h.reachable && !(h.containers || []).length) box.append(el("div", {class: "muted"}, "no containers of this cluster"));
    if (h.rules) box.append(el("div", {class: "rules"}, `firewall: ${h.rules} rule${h.rules > 1 ? "s" : ""}`));
    topo.append(box);
  }
  const counted = c.scheduler_error ? `scheduler: ${c.scheduler_error}` : `scheduler counts ${c.counted} node(s), ${c.scheduler_cpus} CPUs`;
  return el("div", {class: "cluster multihost", "data-cluster": c.name, "data-multihost": "1"},
    el("div", {class: "cluster-head"}, el("h3", {}, c.name), el("span", {}, `across ${(c.hosts || []).length} Docker host(s)`),
      el("span", {}, counted)),
    topo,
    el("div", {class: "connect"}, "Scheduler ", el("code", {}, `${c.scheduler_address}:9702`), " on ", el("code", {}, c.scheduler_host || "-"),
      "; solve with ", el("code", {}, `sorctl solve FILE --cluster ${c.name}`)));
}

async function pollClusters() {
  const box = document.getElementById("clusters");
  try {
    const data = await getJSON("/api/clusters");
    box.replaceChildren();
    const across = data.multihost || [];
    if (!data.engine && across.length) {
      box.append(el("div", {class: "empty", id: "no-cluster"}, `No Docker engine answers on this machine (${data.error}): `,
        "only the clusters across hosts below are shown."));
    } else if (!data.engine) {
      box.append(el("div", {class: "empty", id: "no-cluster"}, `No Docker engine answers (${data.error}). `,
        "Start Docker, then bring a cluster up: ", el("code", {}, "sorctl up --nodes 4 --relay"), "."));
    } else if (!data.clusters.length && !across.length) {
      box.append(el("div", {class: "empty", id: "no-cluster"},
        data.only ? `Cluster ${data.only} is not running. Start it with ` : "No cluster is running. Start one with ",
        el("code", {}, data.only ? `sorctl up --name ${data.only} --nodes 4 --relay` : "sorctl up --nodes 4 --relay"),
        " (solves still run on the local backend, and show up below)."));
    } else {
      for (const c of data.clusters) box.append(renderCluster(c));
    }
    for (const c of across) box.append(renderMultihost(c));
  } catch (e) {
    box.replaceChildren(el("div", {class: "empty"}, "The dashboard server does not answer: " + e.message));
  }
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

// ---- solves --------------------------------------------------------------------------------
function resetSolve(id) {
  Object.assign(state, {current: id, offset: 0, start: null, done: null, failed: null, points: [],
    events: [], workers: {}, lastRound: null});
  state.lost = new Set();
}

function take(records) {
  for (const r of records) {
    if (r.type === "start") state.start = r;
    else if (r.type === "progress") state.points.push({t: r.t, iteration: r.iteration, residual: r.residual});
    else if (r.type === "done") state.done = r;
    else if (r.type === "failed") state.failed = r;
    else if (r.type === "event" && r.event === "round") {
      state.lastRound = r;
      for (const [slot, w] of Object.entries(r.workers || {})) {
        const sum = state.workers[slot] || (state.workers[slot] = {sweep_s: 0, wait_s: 0, residual_s: 0, sent_bytes: 0, send_s: 0});
        for (const key of Object.keys(sum)) sum[key] += w[key] || 0;
      }
    } else if (r.type === "event") {
      state.events.push(r);
      if (r.event === "node_lost") state.lost.add(machine(r.node));
    }
  }
}

function rate() {
  const p = state.points;
  if (p.length < 2) return null;
  const a = p[Math.max(0, p.length - 6)], b = p[p.length - 1];
  return b.t > a.t ? (b.iteration - a.iteration) / (b.t - a.t) : null;
}

function renderSolve() {
  const s = state.start;
  document.getElementById("solve-empty").hidden = !!s;
  document.getElementById("solve").hidden = !s;
  if (!s) return;
  const last = state.points[state.points.length - 1] || {};
  const report = state.done ? state.done.report : null;
  const status = state.done ? "done" : state.failed ? "failed" : "running";
  document.getElementById("solve-title").textContent =
    `${state.current} on ${s.backend}, n = ${s.n}, ${s.method}`;
  const stat = (label, value) => el("div", {class: "stat"}, el("b", {}, value), label);
  document.getElementById("solve-stats").replaceChildren(
    el("div", {class: "stat"}, badge(status), state.failed ? " " + state.failed.message : report ? ` ${report.reason}` : ""),
    stat("iterations", fmt(report ? report.iterations : last.iteration, 0)),
    stat("relative residual", fmt(report ? report.relative_residual : last.residual)),
    stat("iterations / s", report ? fmt(report.iterations / report.time_s, 1) : fmt(rate(), 1)),
    stat("seconds", fmt(report ? report.time_s : last.t, 1)),
    stat("omega", fmt(report ? report.omega : s.options.omega)));

  Plotly.react("residual-chart", [{
    x: state.points.map((p) => p.iteration), y: state.points.map((p) => p.residual),
    mode: "lines+markers", name: "relative residual", marker: {size: 4},
  }], {
    title: {text: "Relative residual", x: 0.02, xanchor: "left"}, margin: {l: 60, r: 20, t: 40, b: 40},
    xaxis: {title: {text: "iteration"}}, yaxis: {title: {text: "||b - Ax|| / ||b||"}, type: "log", exponentformat: "e"},
    shapes: s.options.rtol ? [{type: "line", xref: "paper", x0: 0, x1: 1, y0: s.options.rtol, y1: s.options.rtol, line: {dash: "dot", color: "#2e7d32"}}] : [],
  }, {displaylogo: false, toImageButtonOptions: {filename: `sorctl-residuals-${state.current}`}});

  const slots = Object.keys(state.workers).sort();
  // sweep, wait and residual stack up to the worker's round time; sending runs in the links' own
  // threads beside them, so its bar stands apart (offsetgroup) instead of adding to the stack
  const fig = (k, key) => state.workers[k][key] || 0;
  const series = (key, name, color, base, group) => ({type: "bar", orientation: "h", name, y: slots, x: slots.map((k) => fig(k, key)),
    base: slots.map(base), offsetgroup: group, marker: {color}});
  Plotly.react("workers-chart", slots.length ? [
    series("sweep_s", "sweep", "#1f77b4", () => 0, "time"),
    series("wait_s", "wait for neighbours", "#ff7f0e", (k) => fig(k, "sweep_s"), "time"),
    series("residual_s", "residual", "#2ca02c", (k) => fig(k, "sweep_s") + fig(k, "wait_s"), "time"),
    series("send_s", "send (own threads, overlaps sweep and wait)", "#9467bd", () => 0, "send"),
  ] : [], {
    title: {text: slots.length ? "Worker seconds, all rounds" : "Worker time: cluster solves only", x: 0.02, xanchor: "left"}, barmode: "group",
    margin: {l: 120, r: 20, t: 40, b: 40}, legend: {orientation: "h"}, yaxis: {automargin: true},
  }, {displaylogo: false});

  const table = document.getElementById("workers-table");
  table.replaceChildren(el("tr", {}, ...["worker", "sweep s", "wait s", "residual s", "send s", "sent", "last second"].map((h) => el("th", {}, h))));
  for (const slot of slots) {
    const w = state.workers[slot], lr = (state.lastRound.workers || {})[slot];
    const lost = state.lost.has(machine(slot));
    table.append(el("tr", {class: lost ? "lost" : "", "data-slot": slot}, el("td", {}, slot, lost ? " " : null, lost ? badge("lost") : null),
      el("td", {}, fmt(w.sweep_s, 2)), el("td", {}, fmt(w.wait_s, 2)), el("td", {}, fmt(w.residual_s, 2)),
      el("td", {class: "send"}, fmt(w.send_s, 2)), el("td", {}, bytes(w.sent_bytes)), el("td", {}, lr ? `${fmt(lr.sweep_s, 2)} / ${fmt(lr.wait_s, 2)} s` : "-")));
  }

  const events = document.getElementById("events");
  events.replaceChildren(...state.events.map((e) => el("li", {class: e.event}, `${fmt(e.t, 1)} s  ${describe(e)}`)));
  if (!state.events.length) events.append(el("li", {class: "muted"}, "none yet"));

  const rep = document.getElementById("report");
  rep.replaceChildren();
  if (report) {
    for (const [k, v] of Object.entries(report)) {
      if (k === "residuals" || k === "events") continue;
      rep.append(el("tr", {}, el("th", {}, k), el("td", {}, typeof v === "object" ? JSON.stringify(v) : fmt(v, 6))));
    }
  }
  document.getElementById("report-box").hidden = !report;
  renderMemory(report);
}

// Each process's peak memory and the bytes of A it received (reports that have them).
function renderMemory(report) {
  const table = document.getElementById("memory-table");
  const mem = (report && report.memory) || {}, sent = (report && report.a_bytes) || {};
  const size = (b) => (b === null || b === undefined) ? "-" : bytes(b);
  const rows = [];
  if (mem.host !== undefined) rows.push(["host (sorctl solve)", mem.host, undefined]);
  if (mem.client !== undefined) rows.push(["client", mem.client, sent.host_to_client]);
  if (mem.client_cgroup !== undefined) rows.push(["client container (cgroup)", mem.client_cgroup, undefined]);
  const toWorkers = sent.client_to_workers || {}, peaks = mem.workers || {};
  for (const slot of [...new Set([...Object.keys(peaks), ...Object.keys(toWorkers)])].sort()) {
    rows.push([`worker ${slot}`, peaks[slot], toWorkers[slot]]);
  }
  if (sent.total !== undefined) rows.push(["all links", undefined, sent.total]);
  table.replaceChildren();
  table.hidden = !rows.length;
  if (!rows.length) return;
  table.append(el("tr", {}, ...["process", "peak memory", "A received"].map((h) => el("th", {}, h))));
  for (const [who, peak, got] of rows) {
    table.append(el("tr", {}, el("td", {}, who), el("td", {}, size(peak)), el("td", {}, size(got))));
  }
}

function describe(e) {
  switch (e.event) {
    case "node_lost": return `node lost: ${e.node} (${e.reason}); blocks ${(e.blocks || []).join(", ")} move`;
    case "block_moved": return `block ${e.block} moved: ${e.source} -> ${e.target}`;
    case "placed": return e.order === "pipelined"
      ? `${e.blocks} strips (pipelined, the matrix's own order) placed on ${(e.nodes || []).length} nodes`
      : `${e.blocks} blocks in ${e.colours} colours placed on ${(e.nodes || []).length} nodes`;
    case "recheck": return `recheck, residual ${fmt(e.residual)}`;
    case "x_recovered": return `blocks ${(e.blocks || []).join(", ")}: values from ${(e.sources || []).join(", ")}'s copy`;
    case "omega": return `omega estimated on the workers: ${e.steps} steps, ${e.seconds} s`;
    default: return e.event + " " + JSON.stringify(e);
  }
}

function renderSolves(rows) {
  const table = document.getElementById("solves");
  table.replaceChildren(el("tr", {}, ...["started", "where", "n", "method", "state", "iterations", "residual", "seconds"].map((h) => el("th", {}, h))));
  if (!rows.length) table.append(el("tr", {}, el("td", {colSpan: 8, class: "muted"}, "no solves yet")));
  for (const r of rows) {
    const tr = el("tr", {class: "pick" + (r.id === state.current ? " current" : ""), "data-id": r.id, "data-state": r.state},
      el("td", {}, new Date(r.started * 1000).toLocaleString()), el("td", {}, r.backend), el("td", {}, String(r.n)),
      el("td", {}, r.method || "-"), el("td", {}, badge(r.state), r.reason ? " " + r.reason : ""),
      el("td", {}, fmt(r.iteration, 0)), el("td", {}, fmt(r.residual)), el("td", {}, fmt(r.time_s, 1)));
    tr.addEventListener("click", () => { state.pinned = true; resetSolve(r.id); pollSolve(); });
    table.append(tr);
  }
}

async function pollSolve() {
  try {
    let {solves} = await getJSON("/api/solves");
    if (!state.pinned && solves.length) {
      const pick = (solves.find((s) => s.state === "running") || solves[0]).id;
      if (pick !== state.current) resetSolve(pick);
    }
    if (state.current) {
      const chunk = await getJSON(`/api/solves/${state.current}?offset=${state.offset}`);
      state.offset = chunk.offset;
      take(chunk.records);
      // The list is read again so that it is no older than the records just taken:
      // a solve shown done above must not stay "running" in the table below.
      if (state.done || state.failed) ({solves} = await getJSON("/api/solves"));
    }
    renderSolves(solves);
    renderSolve();
  } catch (e) {
    console.warn(e);
  }
}

async function loop(fn, ms) {
  for (;;) {
    await fn();
    await new Promise((r) => setTimeout(r, ms));
  }
}
loop(pollClusters, CLUSTER_POLL_MS);
loop(pollSolve, POLL_MS);
