// The trial page: name, motivation, the diff against the parent (unified or side by side, highlighted), the outcome,
// telemetry curves beside the parent's, gate decisions, digest and analyses, knowledge shown, lessons, LLM calls.
"use strict";

const PY_KEYWORDS = new Set(("False None True and as assert async await break class continue def del elif else except " +
  "finally for from global if import in is lambda nonlocal not or pass raise return try while with yield").split(" "));
const TOKEN = /(#.*$)|("(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?)|(\b\d+(?:\.\d*)?(?:[eE][-+]?\d+)?\b)|([A-Za-z_]\w*)/g;

// One line of code as spans (keywords, strings, numbers, comments), built from text nodes only.
EF.highlight = function (text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(TOKEN)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    const cls = m[1] ? "tok-com" : m[2] ? "tok-str" : m[3] ? "tok-num" : PY_KEYWORDS.has(m[4]) ? "tok-kw" : null;
    out.push(cls ? EF.el("span", { class: cls }, m[0]) : m[0]);
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
};

function diffLine(line) {
  const kind = line.startsWith("+++") || line.startsWith("---") ? "meta" : line.startsWith("@@") ? "hunk"
    : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "ctx";
  const body = kind === "meta" || kind === "hunk" ? [line] : [line.slice(0, 1), EF.highlight(line.slice(1))];
  return EF.el("div", { class: "line " + kind }, body);
}

function unified(diff) {
  const lines = diff.replace(/\n$/, "").split("\n");
  return EF.el("div", { class: "diff unified", id: "diff" }, lines.map(diffLine));
}

// Side by side: removed lines on the left, added on the right, context on both, aligned hunk by hunk.
function sideBySide(diff) {
  const left = [];
  const right = [];
  let dels = [];
  let adds = [];
  const flush = () => {
    const n = Math.max(dels.length, adds.length);
    for (let i = 0; i < n; i++) {
      left.push(dels[i] !== undefined ? EF.el("div", { class: "line del" }, EF.highlight(dels[i])) : EF.el("div", { class: "line" }));
      right.push(adds[i] !== undefined ? EF.el("div", { class: "line add" }, EF.highlight(adds[i])) : EF.el("div", { class: "line" }));
    }
    dels = []; adds = [];
  };
  for (const line of diff.replace(/\n$/, "").split("\n")) {
    if (line.startsWith("+++") || line.startsWith("---")) continue;
    if (line.startsWith("@@")) { flush(); left.push(EF.el("div", { class: "line hunk" }, line)); right.push(EF.el("div", { class: "line hunk" }, line)); }
    else if (line.startsWith("-")) dels.push(line.slice(1));
    else if (line.startsWith("+")) adds.push(line.slice(1));
    else { flush(); const text = line.slice(1); left.push(EF.el("div", { class: "line" }, EF.highlight(text))); right.push(EF.el("div", { class: "line" }, EF.highlight(text))); }
  }
  flush();
  return EF.el("div", { class: "diff sbs", id: "diff" }, EF.el("div", {}, left), EF.el("div", {}, right));
}

function diffPanel(t) {
  const el = EF.el;
  if (!t.diff) {
    return el("div", { class: "panel" }, el("h2", {}, "Program"),
      el("div", { class: "diff", id: "diff" }, t.code.split("\n").map((l) => el("div", { class: "line" }, EF.highlight(l)))));
  }
  const holder = el("div", {}, unified(t.diff));
  const toggle = el("button", { id: "diff-toggle" }, "side by side");
  toggle.addEventListener("click", () => {
    const sbs = toggle.textContent === "side by side";
    holder.replaceChildren(sbs ? sideBySide(t.diff) : unified(t.diff));
    toggle.textContent = sbs ? "unified" : "side by side";
  });
  return el("div", { class: "panel" }, el("div", { class: "toolbar" }, el("h2", {}, "Diff against the parent"), toggle), holder);
}

function outcomePanel(t) {
  const el = EF.el;
  const metrics = Object.entries(t.metrics || {});
  return el("div", { class: "panel", id: "outcome" }, el("h2", {}, "Outcome"),
    el("div", { class: "cards" },
      EF.card("status", EF.chip(t.status)), EF.card("score", EF.fmt(t.score)),
      EF.card("evaluation", EF.seconds(t.seconds)), EF.card("saved by gates", EF.seconds(t.seconds_saved)),
      t.suspect ? EF.card("suspect", "yes", "not trusted until evaluated again") : null,
      t.reused_from ? EF.card("reused from", EF.trialLink(t.reused_from)) : null),
    metrics.length ? EF.table(["metric", "value"], metrics.map(([k, v]) => [k, typeof v === "number" ? EF.fmt(v) : JSON.stringify(v)])) : null,
    t.error_class ? el("div", {}, el("h2", {}, "Error: ", t.error_class), el("pre", { class: "error-message" }, t.error_message || "")) : null,
    Object.entries(t.logs || {}).map(([name, text]) => el("details", {}, el("summary", {}, name + " (end)"), el("pre", {}, text))),
    t.stages.length ? el("div", {}, el("h2", {}, "Stages"), EF.table(["stage", "status", "score", "seconds", "error"],
      t.stages.map((s) => [s.name, EF.chip(s.status), EF.fmt(s.score), EF.seconds(s.seconds), s.error_class ? s.error_class + ": " + (s.error_message || "") : ""]))) : null,
    el("h2", {}, "Gate decisions"),
    t.decisions.length ? EF.table(["gate", "stage", "action", "reason", "evidence"],
      t.decisions.map((d) => [d.gate, d.stage || "", d.action, d.reason, JSON.stringify(d.evidence)])) : el("p", { class: "muted" }, "no gate acted on this trial"));
}

function curvesPanel(t) {
  const names = Object.keys(t.curves);
  if (!names.length) return EF.el("div", { class: "panel" }, EF.el("h2", {}, "Telemetry"), EF.el("p", { class: "muted" }, "no telemetry was reported"));
  return EF.el("div", { class: "panel" }, EF.el("h2", {}, "Telemetry (dashed: the parent's)"),
    EF.el("div", { class: "grid2" }, names.slice(0, 12).map((n, i) => EF.el("div", { class: "plot curve", id: "curve-" + i, "data-series": n }))));
}

function drawCurves(page, t) {
  for (const node of page.querySelectorAll(".curve")) {
    const name = node.dataset.series;
    const mine = t.curves[name];
    const traces = [{ type: "scatter", mode: "lines+markers", name: "#" + t.id, x: mine.map((p) => p[0]), y: mine.map((p) => p[1]) }];
    const theirs = t.parent && t.parent.curves[name];
    if (theirs) traces.push({ type: "scatter", mode: "lines", name: "parent #" + t.parent.id, x: theirs.map((p) => p[0]), y: theirs.map((p) => p[1]), line: { dash: "dash", color: "#8a8f98" } });
    EF.plot(node, traces, { title: { text: EF.plotText(name), font: { size: 13 } }, xaxis: { title: { text: "step" } } });
  }
}

function learningPanel(t) {
  const el = EF.el;
  return el("div", { class: "panel" },
    el("h2", {}, "Digest"), el("pre", { id: "digest" }, t.digest || "—"),
    t.analyses.filter((a) => a.kind !== "digest").map((a) => el("div", {}, el("h2", {}, "Analysis (", a.kind, ")"), el("pre", {}, a.text))),
    el("h2", {}, "Knowledge shown to the researcher"),
    t.knowledge_shown.length ? EF.table(["#", "kind", "title", "score"], t.knowledge_shown.map((k, i) => [String(i + 1), k.kind, k.title, EF.fmt(k.score, 3)]))
      : el("p", { class: "muted" }, "none"),
    el("h2", {}, "Lessons written"),
    t.lessons.length ? t.lessons.map((l) => el("pre", { class: "lesson" }, l.text)) : el("p", { class: "muted" }, "none"));
}

function llmPanel(t) {
  const el = EF.el;
  if (!t.llm_calls.length) return el("div", { class: "panel" }, el("h2", {}, "LLM calls"), el("p", { class: "muted" }, "none (offline proposer or no call)"));
  return el("div", { class: "panel" }, el("h2", {}, "LLM calls"),
    t.llm_calls.map((c) => el("details", {}, el("summary", {}, c.role + " · " + c.model + " · " + c.tokens_in + "→" + c.tokens_out +
      " tokens · $" + EF.fmt(c.cost_usd, 4) + " · " + EF.seconds(c.latency_s) + (c.error ? " · error: " + c.error : "")),
    el("h2", {}, "Prompt"), el("pre", {}, c.prompt), el("h2", {}, "Response"), el("pre", {}, c.response))));
}

EF.views.trial = {
  async render(arg) {
    const id = parseInt(arg, 10);
    if (!Number.isFinite(id)) throw new Error("no trial chosen: click a node in the lineage tree or a dot in a plot");
    const t = await EF.runApi("trials/" + id);
    EF.trialData = t;
    const el = EF.el;
    return el("div", { id: "trial" },
      el("h1", {}, el("span", { id: "trial-title" }, "Trial #" + t.id + ": " + t.name), " ", EF.chip(t.status)),
      el("div", { class: "toolbar" },
        t.parent ? el("span", {}, "parent ", EF.trialLink(t.parent.id), " (score " + EF.fmt(t.parent.score) + ")") : el("span", { class: "muted" }, "the seed (no parent)"),
        t.inspiration_ids.length ? el("span", {}, "inspirations ", t.inspiration_ids.map(EF.trialLink)) : null,
        t.children.length ? el("span", {}, "children ", t.children.map(EF.trialLink)) : null,
        el("span", { class: "muted" }, "proposer " + t.proposer + (t.model ? " · " + t.model : ""))),
      el("div", { class: "panel" }, el("h2", {}, "Motivation"), el("pre", { id: "motivation" }, t.motivation || "—"),
        Object.keys(t.facts || {}).length ? el("details", {}, el("summary", {}, "what the sampler and proposer decided"),
          el("pre", { id: "facts" }, JSON.stringify(t.facts, null, 2))) : null),
      diffPanel(t), outcomePanel(t), curvesPanel(t), learningPanel(t), llmPanel(t));
  },
  after(page) { drawCurves(page, EF.trialData); },
};
