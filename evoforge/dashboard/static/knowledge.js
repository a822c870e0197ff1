// The knowledge view: the run's knowledge base, searchable by words, each item with its kind, support,
// contradictions, measured effect, trigger and provenance (the trials it came from link to their pages).
"use strict";

function provenanceLinks(p) {
  const ids = [];
  for (const [k, v] of Object.entries(p || {})) {
    if (/trial/.test(k) && Number.isInteger(v)) ids.push(v);
    if (/trial/.test(k) && Array.isArray(v)) v.filter(Number.isInteger).forEach((x) => ids.push(x));
  }
  return ids.length ? EF.el("span", {}, "trials ", ids.map(EF.trialLink)) : null;
}

function itemNode(item) {
  const el = EF.el;
  const effect = { 1: "helped", "-1": "hurt", 0: "effect unknown" }[item.effect_sign];
  return el("div", { class: "item" },
    el("div", { class: "title" }, item.title),
    el("div", { class: "muted" }, item.kind + " · support " + item.support + " · contradictions " + item.contradictions +
      " · " + effect + (item.source ? " · source " + item.source : "") + (item.tags.length ? " · tags " + item.tags.join(", ") : "")),
    item.trigger ? el("div", {}, el("span", { class: "muted" }, "applies when: "), item.trigger) : null,
    el("pre", {}, item.content),
    el("div", {}, provenanceLinks(item.provenance),
      el("details", {}, el("summary", {}, "provenance"), el("pre", {}, JSON.stringify(item.provenance, null, 2)))));
}

EF.views.knowledge = {
  async render() {
    const el = EF.el;
    const box = el("input", { type: "search", id: "kb-search", placeholder: "search words (all must match)" });
    const kind = el("select", { id: "kb-kind" }, ["", "lesson", "pitfall", "heuristic", "note", "paper"].map((k) => el("option", { value: k }, k || "any kind")));
    const list = el("div", { id: "kb-items" });
    const status = el("span", { class: "muted" });
    let timer = null;
    const load = async () => {
      const data = await EF.runApi("knowledge", { q: box.value, kind: kind.value });
      if (!data.available) { status.textContent = "this run has no knowledge base" + (data.error ? ": " + data.error : ""); list.replaceChildren(); return; }
      status.textContent = data.matched + " of " + data.total + " items";
      list.replaceChildren(...data.items.map(itemNode));
    };
    box.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => load().catch(EF.showError), 250); });
    kind.addEventListener("change", () => load().catch(EF.showError));
    await load();
    return el("div", { id: "knowledge" }, el("h1", {}, "Knowledge"), el("div", { class: "toolbar" }, box, kind, status), list);
  },
};
