// evoforge dashboard core: API calls, safe DOM building, the router and live updates.
// Every piece of text read from the record goes into the page as a text node (EF.el / textContent), never as HTML.
"use strict";

const EF = (window.EF = { views: {}, run: "0", runs: [], route: null, live: null, maxId: 0 });
EF.token = new URLSearchParams(location.search).get("token");

EF.api = async function (path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, x));
    else if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  if (EF.token) url.searchParams.set("token", EF.token);
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(path + ": " + response.status + " " + (await response.text()));
  return response.json();
};

EF.runApi = (what, params) => EF.api("/api/runs/" + encodeURIComponent(EF.run) + "/" + what, params);

// el("div", {class: "x", onclick: f}, "text", child, ...): strings become text nodes, never markup.
EF.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
};

EF.fmt = function (x, digits) {
  if (x === null || x === undefined) return "—";
  if (typeof x !== "number") return String(x);
  return Number.isInteger(x) ? String(x) : x.toPrecision(digits || 6).replace(/\.?0+$/, "");
};
EF.seconds = (s) => (s === null || s === undefined ? "—" : s < 120 ? s.toFixed(1) + " s" : (s / 60).toFixed(1) + " min");
EF.chip = (status) => EF.el("span", { class: "chip s-" + status }, status);
EF.card = (key, value, extra) => EF.el("div", { class: "card" }, EF.el("div", { class: "k" }, key),
  EF.el("div", { class: "v" }, value), extra ? EF.el("div", { class: "muted" }, extra) : null);
EF.trialLink = (id) => EF.el("a", { class: "trial-link", href: EF.href("trial", id) }, "#" + id);
EF.href = (view, arg) => "#/" + encodeURIComponent(EF.run) + "/" + view + (arg !== undefined ? "/" + arg : "");
EF.go = (view, arg) => { location.hash = EF.href(view, arg); };
EF.table = function (headers, rows) {
  return EF.el("table", {}, EF.el("thead", {}, EF.el("tr", {}, headers.map((h) => EF.el("th", {}, h)))),
    EF.el("tbody", {}, rows.map((r) => EF.el("tr", {}, r.map((c) => EF.el("td", {}, c))))));
};
EF.showError = function (err) {
  document.getElementById("error").textContent = err ? String(err.message || err) : "";
};

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const run = parts[0] && EF.runs.some((r) => r.run === parts[0]) ? parts[0] : (EF.runs[0] || { run: "0" }).run;
  return { run, view: parts[1] || "overview", arg: parts[2] };
}

async function render() {
  const route = parseRoute();
  const runChanged = route.run !== EF.run;
  EF.run = route.run;
  EF.route = route;
  document.getElementById("run-select").value = EF.run;
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.view === route.view);
    a.setAttribute("href", EF.href(a.dataset.view));
  }
  const view = EF.views[route.view] || EF.views.overview;
  const main = document.getElementById("main");
  EF.showError(null);
  try {
    const page = await view.render(route.arg);
    main.replaceChildren(page);
    if (view.after) view.after(page);
  } catch (err) {
    EF.showError(err);
  }
  if (runChanged || !EF.live) startLive();
}
EF.render = render;

// Live updates: the server sends `trials` events when trials are added or finish; the overview and the lineage
// tree redraw (at most once a second), other views keep what the reader is looking at.
function startLive() {
  if (EF.live) EF.live.close();
  const url = new URL("/api/runs/" + encodeURIComponent(EF.run) + "/events", location.origin);
  if (EF.token) url.searchParams.set("token", EF.token);
  const badge = document.getElementById("live");
  const source = new EventSource(url);
  let pending = null;
  let first = true;
  source.addEventListener("trials", (event) => {
    const data = JSON.parse(event.data);
    EF.maxId = data.max_id;
    badge.textContent = "● live: " + data.total + " trials";
    badge.classList.add("on");
    if (first) { first = false; return; }
    const view = EF.views[EF.route.view];
    if (view && view.live && !pending) {
      pending = setTimeout(() => { pending = null; render(); }, 1000);
    }
  });
  source.onerror = () => { badge.textContent = "○ reconnecting"; badge.classList.remove("on"); };
  EF.live = source;
}

async function start() {
  try {
    EF.runs = await EF.api("/api/runs");
  } catch (err) {
    EF.showError(err);
    return;
  }
  const select = document.getElementById("run-select");
  for (const r of EF.runs) select.append(EF.el("option", { value: r.run }, r.label + " (" + r.task + ")"));
  select.addEventListener("change", () => { EF.run = select.value; EF.go(EF.route ? EF.route.view : "overview"); });
  window.addEventListener("hashchange", render);
  render();
}
document.addEventListener("DOMContentLoaded", start);
