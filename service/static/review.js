// The reviewers' page: lists the queue (GET /review/api/queue), shows one request
// (GET /review/api/requests/ID) and records a decision (POST .../items/N/decision).
// The key stays in this tab's memory; data is placed with textContent only, never parsed as HTML.
"use strict";

let key = "";
let current = null;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function say(text) { document.getElementById("status").textContent = text; }

async function api(path, body) {
  const init = { headers: { "Authorization": "Bearer " + key } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const reply = await fetch("/review/api/" + path, init);
  const data = await reply.json();
  if (!reply.ok) throw new Error(reply.status + ": " + ((data.error && data.error.message) || reply.statusText));
  return data;
}

function timeLeft(seconds) {
  const hours = Math.round(Math.abs(seconds) / 360) / 10;
  return seconds < 0 ? hours + " h overdue" : hours + " h";
}

async function loadQueue() {
  const data = await api("queue");
  const body = document.querySelector("#queue tbody");
  body.replaceChildren();
  for (const request of data.requests) {
    const row = el("tr", null, request.overdue ? "overdue" : "");
    row.tabIndex = 0;
    row.dataset.id = request.id;
    for (const value of [request.due_at.slice(0, 16).replace("T", " "), timeLeft(request.seconds_left),
                         request.priority, request.payer || "unknown payer",
                         request.items.map((i) => i.code || "no code").join(", ")]) {
      row.append(el("td", value));
    }
    row.addEventListener("click", () => show(request.id));
    row.addEventListener("keydown", (event) => { if (event.key === "Enter") show(request.id); });
    body.append(row);
  }
  say(data.pended + " request(s) pended.");
}

function fact(list, name, value) {
  list.append(el("dt", name), el("dd", value === null || value === undefined ? "—" : value));
}

async function show(id) {
  current = await api("requests/" + encodeURIComponent(id));
  document.getElementById("request").hidden = false;
  const facts = document.getElementById("request-facts");
  facts.replaceChildren();
  fact(facts, "Request", current.id);
  fact(facts, "Priority", current.priority);
  fact(facts, "Due", current.due_at + " (" + timeLeft(current.seconds_left) + ")");
  fact(facts, "Status", current.status);
  const items = document.getElementById("items");
  items.replaceChildren();
  for (const item of current.items) {
    const box = el("div", null, "item");
    box.append(el("h3", "Item " + item.sequence + ": " + (item.code || "no code") + " — " + item.status +
                  " (" + item.review_action + ")"));
    box.append(el("p", "Date of service " + (item.date_of_service || "—") + ", place of service " +
                  (item.place_of_service || "—")));
    const owed = el("ul");
    for (const doc of item.documentation_owed) owed.append(el("li", "Owed: " + doc.text));
    for (const doc of item.documentation_present) owed.append(el("li", "Present: " + doc.text));
    box.append(owed);
    for (const policy of item.policies) {
      const link = el("a", policy.title || policy.id);
      link.href = policy.url;
      link.rel = "noopener noreferrer";
      box.append(el("p", "Policy: "), link);
    }
    if (item.status === "pended") {
      const choose = el("button", "Decide item " + item.sequence);
      choose.type = "button";
      choose.addEventListener("click", () => openForm(item));
      box.append(choose);
    }
    items.append(box);
  }
  document.getElementById("decide").hidden = true;
}

function openForm(item) {
  const form = document.getElementById("decide");
  form.dataset.sequence = item.sequence;
  form.dataset.revision = item.revision;
  document.getElementById("decide-sequence").textContent = item.sequence;
  form.hidden = false;
  document.getElementById("action").focus();
}

function decision(form) {
  const body = { action: form.action.value, revision: Number(form.dataset.revision) };
  for (const name of ["reason", "policy_url", "reason_code", "valid_from", "valid_to"]) {
    if (form[name].value.trim()) body[name] = form[name].value.trim();
  }
  if (form.quantity.value) body.quantity = Number(form.quantity.value);
  if (form.extend.checked) body.extend = true;
  return body;
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("signin").addEventListener("submit", (event) => {
    event.preventDefault();
    key = document.getElementById("key").value;
    loadQueue().catch((error) => say(error.message));
  });
  document.getElementById("decide").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const path = "requests/" + encodeURIComponent(current.id) + "/items/" + form.dataset.sequence + "/decision";
    api(path, decision(form))
      .then((data) => { say("Recorded: item " + data.item.sequence + " " + data.item.status + "."); form.reset();
                        return show(current.id).then(loadQueue); })
      .catch((error) => say(error.message));
  });
});
