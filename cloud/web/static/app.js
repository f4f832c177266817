// The dashboard: sign in with a token, the account's hubs and devices live, a device's charts and
// its controls (for a token with the control scope), pairing.
import { api, ApiError, listAll, session } from "./api.js";
import { DeviceCharts } from "./charts.js";
import { controlsFor } from "./controls.js";
import { ago, el, formatValue, label } from "./format.js";
import { Live } from "./live.js";
import { PairingPanel } from "./pairing.js";

const $ = (id) => document.getElementById(id);
const state = {
  me: null, hubs: new Map(), devices: new Map(), cards: new Map(), hubCards: new Map(),
  pairing: new Map(), charts: null, range: 3600, live: null,
};
const canControl = () => Boolean(state.me && state.me.scopes.some((s) => s === "control" || s === "admin"));

function show(view) {
  for (const id of ["signin", "overview", "device"]) $(id).hidden = id !== view;
}

// Sign in and out ---------------------------------------------------------------------------------
async function signIn(token) {
  const { data } = await api("GET", "/api/v1/session", undefined, token);
  session.token = token;
  state.me = data;
  $("who").textContent = `${data.account} · ${data.scopes.includes("admin") ? "admin" : canControl() ? "control" : "read only"}`;
  $("signout").hidden = false;
  document.body.dataset.scope = canControl() ? "control" : "read";
  await reload();
  state.live = new Live(onLive, onLiveState);
  state.live.start();
  route();
}

function signOut(message = "") {
  session.token = null;
  if (state.live) state.live.stop();
  if (state.charts) state.charts.destroy();
  for (const panel of state.pairing.values()) panel.stop();
  Object.assign(state, { me: null, live: null, charts: null });
  state.hubs.clear(); state.devices.clear(); state.cards.clear(); state.hubCards.clear(); state.pairing.clear();
  $("hubs").replaceChildren();
  $("who").textContent = "";
  $("signout").hidden = true;
  $("live").hidden = true;
  $("signin-error").textContent = message;
  delete document.body.dataset.scope;
  show("signin");
  $("token").focus();
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  $("signin-error").textContent = "";
  try {
    await signIn(token);
    $("token").value = "";
  } catch (error) {
    session.token = null;
    $("signin-error").textContent = error instanceof ApiError && error.status === 401
      ? "This token was refused (unknown, expired or revoked)." : error.message;
  }
});
$("signout").addEventListener("click", () => signOut());

// Data --------------------------------------------------------------------------------------------
async function reload() {
  const [hubs, devices] = await Promise.all([listAll("/api/v1/hubs"), listAll("/api/v1/devices")]);
  state.hubs = new Map(hubs.map((h) => [h.id, h]));
  const seen = new Set(devices.map((d) => d.id));
  for (const id of [...state.devices.keys()]) if (!seen.has(id)) removeDevice(id);
  for (const device of devices) state.devices.set(device.id, device);
  renderOverview();
}

async function reloadHubDevices(hubId) {
  const devices = await listAll(`/api/v1/devices?hub_id=${encodeURIComponent(hubId)}`);
  for (const device of devices) putDevice(device);
}

function putDevice(device) {
  state.devices.set(device.id, device);
  const card = state.cards.get(device.id);
  if (card) updateCard(card, device);
  else renderOverview();
  if (state.charts && state.charts.device.id === device.id) renderDeviceCard(device);
}

function removeDevice(id) {
  state.devices.delete(id);
  const card = state.cards.get(id);
  if (card) { card.node.remove(); state.cards.delete(id); }
}

function applyState(device, newState) {
  const merged = { ...device, capabilities: { ...device.capabilities } };
  for (const [capability, values] of Object.entries(newState)) {
    merged.capabilities[capability] = { ...(merged.capabilities[capability] || {}), ...values };
  }
  putDevice(merged);
}

// Live updates ------------------------------------------------------------------------------------
function onLiveState(what) {
  const live = $("live");
  live.hidden = false;
  if (what === "unauthorized") { signOut("Your token is no longer valid."); return; }
  live.classList.toggle("off", what !== "open");
  live.textContent = what === "open" ? "● live" : "○ reconnecting";
  document.body.dataset.live = what;
}

let connectedOnce = false;
function onLive(kind, data) {
  if (kind === "hello") {
    if (connectedOnce) reload().catch(console.error); // catch up on what the gap missed
    connectedOnce = true;
  } else if (kind === "event") {
    const device = state.devices.get(data.device_id);
    if (device) {
      const capabilities = { ...device.capabilities };
      capabilities[data.capability] = { ...(capabilities[data.capability] || {}), [data.attribute]: data.value };
      putDevice({ ...device, capabilities });
    }
    if (state.charts && state.charts.device.id === data.device_id) state.charts.event(data);
  } else if (kind === "device") {
    putDevice(data);
  } else if (kind === "device_removed") {
    removeDevice(data.id);
  } else if (kind === "hub") {
    const before = state.hubs.get(data.id);
    state.hubs.set(data.id, data);
    const card = state.hubCards.get(data.id);
    if (card) updateHub(card, data); else renderOverview();
    if (before && before.online !== data.online) reloadHubDevices(data.id).catch(console.error);
  } else if (kind === "pairing") {
    const panel = state.pairing.get(data.hub_id);
    if (panel) panel.refresh();
  }
}

// Overview ----------------------------------------------------------------------------------------
function renderOverview() {
  const container = $("hubs");
  const byHub = new Map();
  for (const device of state.devices.values()) {
    if (!byHub.has(device.hub_id)) byHub.set(device.hub_id, []);
    byHub.get(device.hub_id).push(device);
  }
  const hubIds = [...new Set([...state.hubs.keys(), ...byHub.keys()])].sort();
  const nodes = [];
  for (const hubId of hubIds) {
    let card = state.hubCards.get(hubId);
    if (!card) { card = hubCard(hubId); state.hubCards.set(hubId, card); }
    updateHub(card, state.hubs.get(hubId) || { id: hubId, online: null });
    const devices = (byHub.get(hubId) || []).sort((a, b) => (a.name || a.model || a.id).localeCompare(b.name || b.model || b.id));
    const cards = devices.map((device) => {
      let c = state.cards.get(device.id);
      if (!c) { c = deviceCard(device); state.cards.set(device.id, c); }
      updateCard(c, device);
      return c.node;
    });
    card.devices.replaceChildren(...cards);
    if (!devices.length) card.devices.append(el("p", { class: "hint", text: "No devices yet." }));
    nodes.push(card.node);
  }
  if (!hubIds.length) nodes.push(el("p", { class: "card hint", text: "No hubs in this account yet." }));
  container.replaceChildren(...nodes);
}

function hubCard(hubId) {
  const dot = el("span", { class: "dot" });
  const status = el("span", { class: "reason" });
  const devices = el("div", { class: "devices" });
  const head = el("div", { class: "hub-head" }, dot, el("h2", { text: hubId }), status);
  const node = el("section", { class: "card hub", "data-hub-id": hubId }, head);
  if (canControl()) {
    const panel = new PairingPanel(hubId, () => state.hubs.get(hubId));
    state.pairing.set(hubId, panel);
    head.append(panel.button);
    node.append(panel.node);
  }
  node.append(devices);
  return { node, dot, status, devices };
}

function updateHub(card, hub) {
  card.dot.className = `dot ${hub.online ? "on" : hub.online === false ? "off" : ""}`;
  const words = hub.online ? "online" : hub.online === false ? "offline" : "no status yet";
  const reason = hub.reason ? ` — ${hub.reason}` : "";
  const seen = hub.last_seen ? ` · seen ${ago(hub.last_seen)}` : "";
  card.status.textContent = `${words}${reason}${seen}`;
  card.node.dataset.online = String(hub.online);
  const panel = state.pairing.get(hub.id);
  if (panel) panel.hubChanged(hub);
}

function deviceCard(device) {
  const link = el("a", { href: `#/device/${encodeURIComponent(device.id)}` });
  const title = el("h3", {}, link);
  const model = el("div", { class: "model" });
  const avail = el("div", { class: "avail" });
  const values = el("dl", { class: "values" });
  const node = el("article", { class: "dev", "data-device-id": device.id }, title, model, avail, values);
  let controls = [];
  if (canControl()) {
    controls = controlsFor(device, (newState) => applyState(state.devices.get(device.id) || device, newState));
    if (controls.length) node.append(el("div", { class: "controls" }, ...controls.map((c) => c.node)));
  }
  return { node, link, model, avail, values, controls, shown: new Map() };
}

function updateCard(card, device) {
  card.link.textContent = device.name || device.model || device.ieee;
  card.model.textContent = [device.manufacturer, device.model, device.ieee].filter(Boolean).join(" · ");
  card.avail.textContent = device.available ? "available" : `unavailable${device.availability_reason ? " — " + device.availability_reason : ""}`;
  card.avail.className = `avail ${device.available ? "yes" : "no"}`;
  card.node.classList.toggle("unavailable", !device.available);
  card.node.dataset.available = String(device.available);
  const rows = [];
  for (const capability of Object.keys(device.capabilities || {}).sort()) {
    for (const [attribute, value] of Object.entries(device.capabilities[capability])) {
      const key = `${capability}.${attribute}`;
      let row = card.shown.get(key);
      if (!row) {
        row = { dt: el("dt", { text: label(capability, attribute) }), dd: el("dd", { "data-value": key }) };
        card.shown.set(key, row);
      }
      const text = formatValue(attribute, value);
      if (row.dd.textContent !== text) {
        if (row.dd.textContent) { row.dd.classList.remove("flash"); void row.dd.offsetWidth; row.dd.classList.add("flash"); }
        row.dd.textContent = text;
      }
      rows.push(row.dt, row.dd);
    }
  }
  card.values.replaceChildren(...rows);
  for (const control of card.controls) control.update(device);
}

// Device page -------------------------------------------------------------------------------------
function renderDeviceCard(device) {
  const card = state.cards.get(device.id);
  const holder = $("device-card");
  if (card && holder.firstChild !== card.node) holder.replaceChildren(card.node);
}

async function openDevice(id) {
  let device = state.devices.get(id);
  if (!device) {
    try { device = (await api("GET", `/api/v1/devices/${encodeURIComponent(id)}`)).data; } catch (error) {
      $("device-card").replaceChildren(el("p", { class: "error", text: error.message }));
      $("charts").replaceChildren();
      show("device");
      return;
    }
    putDevice(device);
  }
  show("device");
  let card = state.cards.get(id);
  if (!card) { card = deviceCard(device); state.cards.set(id, card); updateCard(card, device); }
  $("device-card").replaceChildren(card.node);
  if (state.charts) state.charts.destroy();
  state.charts = new DeviceCharts($("charts"), device, state.range);
  markRange();
  await state.charts.load();
}

function markRange() {
  for (const button of document.querySelectorAll(".range")) {
    button.classList.toggle("active", Number(button.dataset.range) === state.range);
  }
}

for (const button of document.querySelectorAll(".range")) {
  button.addEventListener("click", () => {
    state.range = Number(button.dataset.range);
    markRange();
    if (state.charts) { state.charts.seconds = state.range; state.charts.load(); }
  });
}
window.addEventListener("resize", () => { if (state.charts) state.charts.resize(); });

// Routing -----------------------------------------------------------------------------------------
function route() {
  if (!state.me) { show("signin"); return; }
  const match = location.hash.match(/^#\/device\/(.+)$/);
  if (match) { openDevice(decodeURIComponent(match[1])); return; }
  if (state.charts) { state.charts.destroy(); state.charts = null; }
  renderOverview();
  show("overview");
}
window.addEventListener("hashchange", route);

// Start: a token kept by this tab signs in again after a reload.
if (session.token) {
  signIn(session.token).catch((error) => signOut(error.status === 401 ? "Your token is no longer valid." : error.message));
} else {
  signOut();
}
