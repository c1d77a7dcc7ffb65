// The review page: calls the public API (POST /recommend with model_uri, so that nothing it
// asks is logged), renders one version's list or two side by side, and a sample of users.
"use strict";

const $ = (id) => document.getElementById(id);
const KNOBS = ["diversity", "calibration", "tail_share", "max_per"];
const PARTS = ["llm", "cf", "popularity", "transition", "query"];
const TOKEN_KEY = "llmrec-review-token";
let token = sessionStorage.getItem(TOKEN_KEY) || "";
const touched = new Set();  // knobs moved by the person (the others: the version's default)
let appModel = "";          // what the app follows, e.g. models:/llmrec-scorer@champion

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function say(message, kind = "") {
  const status = $("status");
  status.textContent = message;
  status.className = kind;
}

class ApiProblem extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, body) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { headers };
  if (body !== undefined) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(data.detail) ? data.detail.map((d) => d.msg).join("; ") : "";
    if (response.status === 401) {
      $("token").focus();
      throw new ApiProblem(401, "This server needs its API token: enter it above.");
    }
    throw new ApiProblem(response.status, `${response.status}: ${detail || response.statusText}`);
  }
  return data;
}

// -- versions --------------------------------------------------------------------------

async function loadVersions() {
  const listed = await api("/admin/versions");
  appModel = listed.follows;
  const options = [[listed.follows, `the app: ${listed.follows} (version ${listed.model_version})`]];
  const aliases = [];
  for (const v of listed.versions) {
    for (const alias of v.aliases) aliases.push([`models:/${listed.model}@${alias}`, `@${alias} (version ${v.version})`]);
  }
  const versions = listed.versions.map((v) => [
    `models:/${listed.model}/${v.version}`,
    `version ${v.version}${v.aliases.length ? ` (${v.aliases.map((a) => "@" + a).join(", ")})` : ""}`,
  ]);
  for (const [id, extra] of [["version-a", []], ["version-b", [["", "none"]]]]) {
    const select = $(id);
    const keep = select.value;
    select.replaceChildren();
    for (const [value, label] of [...extra, ...options, ...aliases, ...versions]) {
      if (![...select.options].some((o) => o.value === value)) select.append(el("option", { value, text: label }));
    }
    if ([...select.options].some((o) => o.value === keep)) select.value = keep;
  }
}

// -- requests --------------------------------------------------------------------------

function knobValues() {
  const out = { k: Number($("k").value) };
  for (const name of touched) {
    const value = Number($(name).value);
    if (name === "max_per") out.max_per = value > 0 ? { categories: value } : {};
    else out[name] = value;
  }
  return out;
}

function who() {
  const user = $("user").value.trim();
  const history = $("history").value.split(/[\n,]+/).map((s) => s.trim()).filter(Boolean);
  const query = $("query").value;
  const out = {};
  if (user) out.user_id = user;
  else if (history.length) out.history = history;
  if (query.trim()) out.query = query;
  return out;
}

function recommend(modelUri, person, extra = {}) {
  return api("/recommend", { ...person, ...knobValues(), model_uri: modelUri || appModel, ...extra });
}

// -- one user, one or two versions --------------------------------------------------------

function partsBar(parts) {
  const total = PARTS.reduce((sum, p) => sum + Math.abs(parts[p] || 0), 0) || 1;
  const described = PARTS.filter((p) => parts[p]).map((p) => `${p} ${parts[p].toFixed(2)}`).join(", ");
  const bar = el("span", { class: "bar", role: "img", "aria-label": `score parts: ${described}`, title: described });
  for (const p of PARTS) {
    const v = parts[p] || 0;
    if (!v) continue;
    const seg = el("span", { class: `seg ${p}${v < 0 ? " negative" : ""}` });
    seg.style.width = `${(100 * Math.abs(v)) / total}%`;
    bar.append(seg);
  }
  return bar;
}

function rankNote(item, rank, other, otherName, versusA) {
  // In list A: where B has the item. In list B: how far it moved against A.
  if (!other) return null;
  const there = other.get(item.item_id);
  if (there === undefined) {
    return el("span", { class: "mark only", text: versusA ? "new vs A" : `not in ${otherName}` });
  }
  if (!versusA) return el("span", { class: "mark both", text: `in both · #${there + 1} in ${otherName}` });
  const up = there - rank;
  const moved = up > 0 ? `▲${up}` : up < 0 ? `▼${-up}` : "same rank";
  return el("span", { class: "mark both", title: `#${there + 1} in A`, text: `in both · ${moved} vs A` });
}

function renderList(section, name, answer, other, otherName) {
  section.replaceChildren();
  section.hidden = false;
  section.append(el("h3", { text: `${name}: version ${answer.model_version}` }));
  const m = answer.measures;
  if (m) {
    const fmt = (x, digits = 3) => (x === null || x === undefined ? "n/a" : Number(x).toFixed(digits));
    const dl = el("dl", { class: "measures" });
    const rows = [
      ["diversity", fmt(m.diversity)], ["long-tail share", fmt(m.tail_share, 2)],
      ["mean popularity", fmt(m.mean_popularity, 1)], ["categories", String(m.categories)],
      ["miscalibration", fmt(m.miscalibration)],
    ];
    for (const [term, value] of rows) dl.append(el("dt", { text: term }), el("dd", { text: value }));
    section.append(dl);
  }
  const list = el("ol", { class: "items" });
  answer.items.forEach((item, rank) => {
    const li = el("li", { "data-item-id": item.item_id });
    const head = el("div", { class: "head" },
      el("span", { class: "title", text: item.title }),
      el("span", { class: "id", text: item.item_id }),
      el("span", { class: "score", text: item.score.toFixed(3) }));
    const note = rankNote(item, rank, other, otherName, name === "B");
    if (note) head.append(note);
    li.append(head);
    if (item.explanation) {
      li.append(el("p", { class: "why", text: item.explanation.text }), partsBar(item.explanation.parts));
    }
    list.append(li);
  });
  if (!answer.items.length) list.append(el("li", { class: "empty", text: "nothing to recommend" }));
  section.append(list);
}

function chip(text, kind) {
  return el("span", { class: `chip ${kind}`, text });
}

function renderUnderstood(read) {
  const box = $("understood");
  box.replaceChildren();
  if (!read) return;
  box.append(el("span", { class: "note", text: "Request read as:" }));
  for (const c of read.categories) box.append(chip(c, "want"));
  for (const c of read.without) box.append(chip(`not ${c}`, "avoid"));
  for (const item of read.like) box.append(chip(`like ${item.title}`, "like"));
  if (read.years) box.append(chip(`${read.years.first}–${read.years.last}`, "want"));
  if (read.without_years) box.append(chip(`not ${read.without_years.first}–${read.without_years.last}`, "avoid"));
  for (const [attr, values] of Object.entries(read.attributes || {})) for (const v of values) box.append(chip(`${attr}: ${v}`, "want"));
  for (const [attr, values] of Object.entries(read.without_attributes || {})) for (const v of values) box.append(chip(`no ${attr}: ${v}`, "avoid"));
  if (read.text) box.append(chip(`text: “${read.text}”`, "text"));
  if (read.strict) box.append(chip("strict", "text"));
}

async function renderHistory(person, answer) {
  const list = $("history-list");
  list.replaceChildren();
  let items = [];
  if (person.user_id) {
    items = (await api(`/users/${encodeURIComponent(person.user_id)}/history`)).items;
  } else if (person.history) {
    items = person.history.map((id) => ({ item_id: id, title: id }));
  }
  const referred = answer.understood ? answer.understood.like : [];
  for (const item of [...items].reverse()) {
    list.append(el("li", {}, el("span", { class: "title", text: item.title }), el("span", { class: "id", text: item.item_id })));
  }
  for (const item of referred) {
    list.append(el("li", { class: "referred" }, el("span", { class: "title", text: item.title }), el("span", { class: "id", text: "from the request" })));
  }
  if (!list.children.length) list.append(el("li", { class: "empty", text: "none: the request alone" }));
}

function overlap(a, b) {
  const ids = new Set(a.items.slice(0, 10).map((i) => i.item_id));
  const shared = b.items.slice(0, 10).filter((i) => ids.has(i.item_id)).length;
  return shared / Math.max(1, Math.min(10, Math.max(a.items.length, b.items.length)));
}

async function showUser() {
  const person = who();
  if (!person.user_id && !person.history && !person.query) {
    say("Pick a user, or type a history or a request.", "error");
    $("user").focus();
    return;
  }
  const a = $("version-a").value;
  const b = $("version-b").value;
  document.body.dataset.state = "loading";
  say("Asking…");
  const extra = { explain: true, measures: true };
  const [answerA, answerB] = await Promise.all([
    recommend(a, person, extra),
    b ? recommend(b, person, extra) : Promise.resolve(null),
  ]);
  const rankOf = (answer) => (answer ? new Map(answer.items.map((item, i) => [item.item_id, i])) : null);
  $("sample-view").hidden = true;
  $("user-view").hidden = false;
  $("user-title").textContent = person.user_id ? `User ${person.user_id}` : "Typed history and request";
  renderList($("list-a"), "A", answerA, rankOf(answerB), "B");
  if (answerB) renderList($("list-b"), "B", answerB, rankOf(answerA), "A");
  else $("list-b").hidden = true;
  renderUnderstood(answerA.understood);
  await renderHistory(person, answerA);
  const shared = answerB ? ` · overlap@10 ${overlap(answerA, answerB).toFixed(2)}` : "";
  say(`${answerA.items.length} items from version ${answerA.model_version}${answerB ? ` and ${answerB.items.length} from version ${answerB.model_version}` : ""}${shared}.`);
  performance.mark("llmrec-results");
  document.body.dataset.state = "ready";
}

// -- a sample of users --------------------------------------------------------------------

let sampleSeed = 0;

async function pool(tasks, width) {
  const out = new Array(tasks.length);
  let next = 0;
  async function worker() {
    while (next < tasks.length) {
      const i = next++;
      out[i] = await tasks[i]();
    }
  }
  await Promise.all(Array.from({ length: Math.min(width, tasks.length) }, worker));
  return out;
}

async function showSample() {
  const a = $("version-a").value;
  const b = $("version-b").value;
  document.body.dataset.state = "loading";
  say("Asking for 20 users…");
  const { users } = await api(`/users?sample=20&seed=${sampleSeed++}`);
  const k = { k: Math.max(10, Number($("k").value)) };
  const tasks = users.map((user) => async () => {
    const person = { user_id: user };
    const [ra, rb] = await Promise.all([
      recommend(a, person, k),
      b ? recommend(b, person, k) : Promise.resolve(null),
    ]);
    return { user, ra, rb };
  });
  const rows = await pool(tasks, 4);
  const body = $("sample-table").tBodies[0];
  body.replaceChildren();
  const overlaps = [];
  for (const { user, ra, rb } of rows) {
    const open = el("button", { type: "button", class: "link", text: user, "aria-label": `open user ${user}` });
    open.addEventListener("click", () => {
      $("user").value = user;
      $("history").value = "";
      run(showUser);
    });
    const titles = (r) => (r ? el("ol", { class: "top5" }, ...r.items.slice(0, 5).map((i) => el("li", { text: i.title }))) : "");
    const o = rb ? overlap(ra, rb) : null;
    if (o !== null) overlaps.push(o);
    body.append(el("tr", {},
      el("th", { scope: "row" }, open),
      el("td", {}, titles(ra)),
      el("td", {}, titles(rb)),
      el("td", { class: "num", text: o === null ? "n/a" : o.toFixed(2) })));
  }
  const mean = overlaps.length ? overlaps.reduce((s, x) => s + x, 0) / overlaps.length : null;
  $("sample-a").textContent = `Version A (${rows[0] ? rows[0].ra.model_version : "?"}): top 5`;
  $("sample-b").textContent = b && rows[0] ? `Version B (${rows[0].rb.model_version}): top 5` : "Version B: none";
  $("sample-summary").textContent = mean === null
    ? `${rows.length} random users (pick a version B to compare).`
    : `${rows.length} random users · mean overlap@10 ${mean.toFixed(2)}`;
  $("user-view").hidden = true;
  $("sample-view").hidden = false;
  say(`Sample of ${rows.length} users.`);
  document.body.dataset.state = "ready";
}

// -- wiring -------------------------------------------------------------------------------

async function run(action) {
  try {
    await action();
  } catch (err) {
    say(err.message || String(err), "error");
    document.body.dataset.state = "error";
  }
}

function showKnob(name) {
  const out = $(`${name}-out`);
  if (!touched.has(name)) out.textContent = "version default";
  else if (name === "max_per") out.textContent = $(name).value === "0" ? "no cap" : $(name).value;
  else out.textContent = Number($(name).value).toFixed(2);
}

let searchTimer = null;
function searchUsers() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(async () => {
    try {
      const { users } = await api(`/users?prefix=${encodeURIComponent($("user").value.trim())}&limit=20`);
      $("user-ids").replaceChildren(...users.map((u) => el("option", { value: u })));
    } catch (err) {
      say(err.message, "error");
    }
  }, 150);
}

function requery() {
  if (!$("user-view").hidden) run(showUser);
  else if (!$("sample-view").hidden) run(showSample);
}

function wire() {
  $("token").value = token;
  $("auth-form").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("token").value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    run(async () => {
      await loadVersions();
      say("Token accepted.");
    });
  });
  $("ask-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run(showUser);
  });
  $("sample").addEventListener("click", () => run(showSample));
  $("user").addEventListener("input", searchUsers);
  $("k").addEventListener("input", () => ($("k-out").textContent = $("k").value));
  $("k").addEventListener("change", requery);
  for (const name of KNOBS) {
    $(name).addEventListener("input", () => {
      touched.add(name);
      showKnob(name);
    });
    $(name).addEventListener("change", requery);
  }
  $("reset-knobs").addEventListener("click", () => {
    touched.clear();
    for (const name of KNOBS) {
      $(name).value = 0;
      showKnob(name);
    }
    requery();
  });
  $("version-a").addEventListener("change", requery);
  $("version-b").addEventListener("change", requery);
}

async function start() {
  wire();
  const params = new URLSearchParams(location.search);
  try {
    await loadVersions();
  } catch (err) {
    say(err.message, "error");
    document.body.dataset.state = "error";
    return;
  }
  for (const [param, id] of [["a", "version-a"], ["b", "version-b"]]) {
    const value = params.get(param);
    if (value !== null) {
      const select = $(id);
      if (![...select.options].some((o) => o.value === value)) select.append(el("option", { value, text: value }));
      select.value = value;
    }
  }
  if (params.get("k")) {
    $("k").value = params.get("k");
    $("k-out").textContent = $("k").value;
  }
  if (params.get("query")) $("query").value = params.get("query");
  if (params.get("user")) {
    $("user").value = params.get("user");
    await run(showUser);
  } else {
    say("Pick a user, or type a history or a request.");
    document.body.dataset.state = "ready";
  }
}

start();
