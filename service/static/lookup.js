// The lookup page: fills the payer, plan and place-of-service choices, sends the order to
// POST /v1/requirements, shows one answer per code and prints a summary for the chart.
// Data is placed with textContent only, never parsed as HTML.
"use strict";

const PA_TEXT = {
  "auth-needed": "Prior authorization needed",
  "no-auth": "No prior authorization needed",
  "conditional": "Depends on facts not given yet",
  "satisfied": "An authorization on file covers it",
  "unknown": "Not known to covreq: ask the payer",
};
const COVERED_TEXT = {
  "covered": "Covered",
  "not-covered": "Not covered",
  "conditional": "Coverage depends on facts not given yet",
  "unknown": "Coverage unknown to covreq",
};
// Facts an answer may depend on: how to name them, and the field of this page that supplies them.
const FACTS = {
  "place_of_service": ["Place of service", "place_of_service"],
  "diagnoses": ["Diagnoses (ICD-10-CM)", "diagnoses"],
  "state": ["Patient's state", "state"],
  "type_of_bill": ["Type of bill", "type_of_bill"],
  "plan": ["Plan", "plan"],
  "date_of_service": ["Date of service", "date_of_service"],
  "patient.age": ["Patient's age (birth date)", null],
  "patient.sex": ["Patient's sex", null],
  "modifiers": ["Modifiers", null],
  "stage": ["Stage (trial or permanent)", null],
  "trial_place_of_service": ["Place of service of the trial", null],
  "units": ["Units", null],
  "provider.exemptions": ["Provider exemptions", null],
  "provider.type": ["Kind of provider (e.g. va, ihs)", null],
  "revenue_code": ["Revenue code of the line", null],
  "round_trips_in_10_days": ["Most round trips planned in any 10 days", null],
  "round_trip_weeks": ["Weeks in a row with a round trip planned", null],
};
const LOCATION_FIELDS = [
  [/^services/, "codes"], [/^diagnoses/, "diagnoses"], [/^payer/, "payer"], [/^plan/, "plan"],
  [/^date_of_service/, "date_of_service"], [/^place_of_service/, "place_of_service"],
  [/^state/, "state"], [/^type_of_bill/, "type_of_bill"],
];

const $ = (id) => document.getElementById(id);
// Payers by id: {title, plans: [{id, title}]}, from GET /lookup/payers.
const payers = {};
// The CMS place-of-service code set: [{code, name, definition}], from place-of-service.json.
let places = [];

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function list(items) {
  return items.split(/[\s,;]+/).filter(Boolean);
}

function todayIso() {
  const now = new Date();
  return new Date(now.getTime() - now.getTimezoneOffset() * 60000).toISOString().slice(0, 10);
}

function option(value, text, title) {
  const node = element("option", text);
  node.value = value;
  if (title) node.title = title;
  return node;
}

// The chosen option's whole text under a select, which a narrow select may cut.
function showFullName(select, hint) {
  const chosen = select.selectedOptions[0];
  $(hint).textContent = chosen && chosen.value ? chosen.textContent : "";
}

function fillPlans() {
  const plan = $("plan");
  const entry = payers[$("payer").value];
  plan.replaceChildren(option("", "Not known / any plan"),
                       ...(entry ? entry.plans : []).map((p) => option(p.id, p.title)));
  plan.disabled = !entry;
  showFullName($("payer"), "payer-name");
  showFullName(plan, "plan-name");
}

async function loadPayers() {
  const response = await fetch("/lookup/payers");
  const body = await response.json();
  $("ruleset").textContent = body.ruleset;
  for (const entry of body.payers) {
    payers[entry.id] = entry;
    $("payer").append(option(entry.id, entry.title));
  }
  fillPlans();
}

// Places whose code starts with the query, or whose name and definition hold every word of it.
function matchingPlaces(query) {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length) return places;
  if (/^\d{1,2}$/.test(query.trim())) return places.filter((p) => p.code.startsWith(query.trim()));
  return places.filter((p) => {
    const text = `${p.code} ${p.name} ${p.definition}`.toLowerCase();
    return words.every((word) => text.includes(word));
  });
}

function fillPlaces() {
  const select = $("place_of_service");
  const current = select.value;
  const found = matchingPlaces($("pos-search").value);
  select.replaceChildren(option("", "Not known yet"),
                         ...found.map((p) => option(p.code, `${p.code} ${p.name}`, p.definition)));
  select.value = found.length === 1 ? found[0].code : found.some((p) => p.code === current) ? current : "";
  $("pos-count").textContent = found.length === places.length ? `All ${places.length} CMS places of service.`
    : `${found.length} of ${places.length} places of service match.`;
}

async function loadPlaces() {
  const response = await fetch("/lookup/place-of-service.json");
  places = (await response.json()).codes;
  fillPlaces();
}

function requestBody() {
  const body = {payer: $("payer").value, services: list($("codes").value).map((code) => ({code}))};
  for (const name of ["plan", "date_of_service", "place_of_service", "type_of_bill"]) {
    if ($(name).value.trim()) body[name] = $(name).value.trim();
  }
  if ($("state").value.trim()) body.state = $("state").value.trim().toUpperCase();
  const diagnoses = list($("diagnoses").value);
  if (diagnoses.length) body.diagnoses = diagnoses;
  return body;
}

function section(card, title, content) {
  card.append(element("h4", title), content);
}

function bulletList(items, build) {
  const ul = element("ul");
  for (const item of items) ul.append(build(item));
  return ul;
}

function checklist(decision, index) {
  const items = bulletList(decision.documentation, (item) => {
    const li = element("li");
    const box = element("input");
    box.type = "checkbox";
    box.id = `doc-${index}-${item.id}`;
    const label = element("label", item.text);
    label.htmlFor = box.id;
    label.append(" ", element("span", item.kind, "kind"));
    li.append(box, label);
    if (item.required_when) li.append(element("p", `Needed ${item.required_when}`, "when"));
    return li;
  });
  items.className = "checklist";
  return items;
}

function settles(decision) {
  const wrapper = element("div");
  wrapper.append(bulletList(decision.info_needed, (fact) => {
    const [label, field] = FACTS[fact] || [fact, null];
    const li = element("li", label);
    if (field) {
      const button = element("button", `Enter ${label.toLowerCase()}`, "link");
      button.type = "button";
      button.addEventListener("click", () => $(field).focus());
      li.append(" ", button);
    } else {
      li.append(element("span", " (not asked on this page; the API takes it)", "hint"));
    }
    return li;
  }));
  if (decision.possible) {
    wrapper.append(element("p", `Possible answers once known: ${decision.possible.map((p) => PA_TEXT[p] || p).join("; ")}.`));
  }
  return wrapper;
}

function policyLinks(decision) {
  return bulletList(decision.policies, (policy) => {
    const li = element("li");
    const link = element("a", policy.title);
    link.href = policy.url;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.append(element("span", " (opens in a new tab)", "visually-hidden"));
    li.append(link, element("span", ` (version ${policy.version}, ${policy.id})`, "hint"));
    return li;
  });
}

function card(decision, index) {
  const article = element("article", null, `answer ${decision.pa_needed}`);
  const heading = element("h3");
  heading.id = `answer-${index}`;
  article.setAttribute("aria-labelledby", heading.id);
  heading.append(element("span", decision.code, "code"), " ",
                 element("span", PA_TEXT[decision.pa_needed] || decision.pa_needed, "badge"), " ",
                 element("code", decision.pa_needed, "value"));
  article.append(heading);
  const coverage = element("p", `${COVERED_TEXT[decision.covered] || decision.covered} (${decision.system})`, "covered");
  article.append(coverage);
  if (decision.authorization) article.append(element("p", `Authorization on file: ${decision.authorization}`));
  if (decision.info_needed.length) section(article, "What would settle it", settles(decision));
  if (decision.documentation.length && decision.pa_needed === "conditional") {
    const wrapper = element("div");
    wrapper.append(element("p", "Gather these in case: they apply only if the facts above make prior "
                                + "authorization needed.", "hint"), checklist(decision, index));
    section(article, "Documentation checklist, if prior authorization turns out to be needed", wrapper);
  } else if (decision.documentation.length) {
    section(article, "Documentation checklist", checklist(decision, index));
  }
  section(article, "Why", bulletList(decision.reasons, (reason) => element("li", reason)));
  if (decision.policies.length) section(article, "Policies", policyLinks(decision));
  return article;
}

function summary(body, response) {
  const counts = {};
  for (const decision of response.decisions) counts[decision.pa_needed] = (counts[decision.pa_needed] || 0) + 1;
  const parts = Object.entries(counts).map(([value, n]) => `${n} ${(PA_TEXT[value] || value).toLowerCase()}`);
  const codes = response.decisions.length === 1 ? "1 code" : `${response.decisions.length} codes`;
  return element("p", `${codes} for ${body.payer} on ${response.as_of}: ${parts.join(", ")}.`, "summary");
}

// What was asked, in words: the head of the printed summary.
function orderFacts(body, response) {
  const chosen = (id) => $(id).selectedOptions[0] ? $(id).selectedOptions[0].textContent : "";
  const facts = [
    ["Payer", chosen("payer")], ["Plan", body.plan ? chosen("plan") : "not given"],
    ["Codes", body.services.map((s) => s.code).join(", ")], ["Date of service", response.as_of],
    ["Place of service", body.place_of_service ? chosen("place_of_service") : "not given"],
    ["Diagnoses", (body.diagnoses || []).join(", ") || "not given"],
    ["Patient's state", body.state || "not given"], ["Type of bill", body.type_of_bill || "not given"],
    ["Rule set", response.ruleset], ["Checked", new Date().toLocaleString()],
  ];
  const list = element("dl");
  for (const [name, value] of facts) list.append(element("dt", name), element("dd", value));
  return list;
}

function showError(message, location) {
  const entry = LOCATION_FIELDS.find(([pattern]) => pattern.test(location || ""));
  const alert = element("p", null, "error");
  alert.setAttribute("role", "alert");
  alert.append(element("strong", "Not checked: "), message);
  if (entry) {
    const field = $(entry[1]);
    field.setAttribute("aria-invalid", "true");
    alert.append(" ", element("span", `(${document.querySelector(`label[for="${entry[1]}"]`).textContent.trim()})`));
  }
  $("answers").replaceChildren(alert);
}

async function submit(event) {
  event.preventDefault();
  const answers = $("answers");
  for (const field of document.querySelectorAll("[aria-invalid]")) field.removeAttribute("aria-invalid");
  const body = requestBody();
  answers.setAttribute("aria-busy", "true");
  $("submit").disabled = true;
  try {
    const response = await fetch("/v1/requirements", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (!response.ok) {
      showError(answer.error ? answer.error.message : `HTTP ${response.status}`, answer.error && answer.error.location);
      return;
    }
    answers.replaceChildren(summary(body, answer), ...answer.decisions.map(card));
    $("order").replaceChildren(element("h3", "Order"), orderFacts(body, answer));
    $("order").hidden = false;
    $("print").hidden = false;
    $("ruleset").textContent = answer.ruleset;
  } catch (error) {
    showError(`the service did not answer (${error.message})`);
  } finally {
    answers.setAttribute("aria-busy", "false");
    $("submit").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("date_of_service").value = todayIso();
  $("payer").addEventListener("change", fillPlans);
  $("plan").addEventListener("change", () => showFullName($("plan"), "plan-name"));
  $("pos-search").addEventListener("input", fillPlaces);
  $("lookup").addEventListener("submit", submit);
  $("print").addEventListener("click", () => window.print());
  loadPayers().catch((error) => showError(`could not load the payers (${error.message})`));
  loadPlaces().catch((error) => showError(`could not load the places of service (${error.message})`));
});
