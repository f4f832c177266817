// Controls by capability. Each sends a command and shows pending, then done with the state read
// back from the device, or the API's error.
import { api } from "./api.js";
import { baseCapability, el, formatValue } from "./format.js";

const KELVIN = { min: 2000, max: 6500 };
const THERMOSTAT_MODES = ["off", "heat", "cool", "auto"];

function limits(device, capability, attribute, fallback) {
  const found = ((device.constraints || {})[capability] || {})[attribute];
  return { min: found?.min ?? fallback.min, max: found?.max ?? fallback.max };
}

// Run one command; `status` shows its course. `onState` gets the state read back.
export async function runCommand(device, capability, command, args, status, onState) {
  status.className = "status pending";
  status.textContent = `${command.replaceAll("_", " ")}: pending…`;
  status.dataset.state = "pending";
  try {
    const { data } = await api("POST", `/api/v1/devices/${encodeURIComponent(device.id)}/commands`,
      { capability, command, args });
    const state = (data.state || {})[capability] || {};
    const shown = Object.entries(state)
      .map(([a, v]) => (typeof v === "boolean" ? formatValue(a, v) : `${a} ${formatValue(a, v)}`)).join(", ");
    status.className = "status done";
    status.textContent = `done${shown ? ": " + shown : ""}`;
    status.dataset.state = "done";
    if (data.state) onState(data.state);
  } catch (error) {
    status.className = "status failed";
    status.textContent = error.message;
    status.dataset.state = "failed";
  }
}

// A slider that sends its value when released and follows the device's state otherwise.
function slider(device, capability, attribute, command, argName, range, step, onState) {
  const status = el("span", { class: "status", "data-status": capability });
  const input = el("input", { type: "range", min: range.min, max: range.max, step,
                              "data-control": capability, "aria-label": `${capability} ${attribute}` });
  const shown = el("output", {});
  let busy = false;
  const set = (value) => {
    if (busy || typeof value !== "number" || document.activeElement === input) return;
    input.value = value;
    shown.textContent = formatValue(attribute, Number(input.value));
  };
  input.addEventListener("input", () => { shown.textContent = formatValue(attribute, Number(input.value)); });
  input.addEventListener("change", async () => {
    busy = true;
    await runCommand(device, capability, command, { [argName]: Number(input.value) }, status, onState);
    busy = false;
    input.blur();
  });
  const node = el("div", { class: "ctl" }, el("label", { text: attribute.replaceAll("_", " ") }), input, shown, status);
  return { node, update: (d) => set(((d.capabilities || {})[capability] || {})[attribute]) };
}

function switchControl(device, capability, onState) {
  const status = el("span", { class: "status", "data-status": capability });
  const button = el("button", { type: "button", "data-control": capability });
  let on = false;
  button.addEventListener("click", async () => {
    button.disabled = true;
    await runCommand(device, capability, on ? "off" : "on", {}, status, onState);
    button.disabled = false;
  });
  const node = el("div", { class: "ctl" }, el("label", { text: capability.replaceAll("_", " ") }), button, status);
  const update = (d) => {
    on = Boolean(((d.capabilities || {})[capability] || {}).on);
    button.textContent = on ? "Turn off" : "Turn on";
    button.setAttribute("aria-pressed", String(on));
  };
  return { node, update };
}

function thermostatControls(device, capability, onState) {
  const status = el("span", { class: "status", "data-status": capability });
  const shown = el("output", {});
  let setpoint = null;
  const step = async (delta) => {
    if (setpoint === null) return;
    const { min, max } = limits(device, capability, "heating_setpoint", { min: 5, max: 35 });
    const value = Math.min(max, Math.max(min, Math.round((setpoint + delta) * 2) / 2));
    await runCommand(device, capability, "set_heating_setpoint", { value }, status, onState);
  };
  const down = el("button", { type: "button", "data-control": `${capability}-down`, "aria-label": "setpoint down",
                              onclick: () => step(-0.5) }, "−");
  const up = el("button", { type: "button", "data-control": `${capability}-up`, "aria-label": "setpoint up",
                            onclick: () => step(0.5) }, "+");
  const mode = el("select", { "data-control": `${capability}-mode`, "aria-label": "mode" },
    ...THERMOSTAT_MODES.map((m) => el("option", { value: m, text: m })));
  mode.addEventListener("change", () => runCommand(device, capability, "set_mode", { mode: mode.value }, status, onState));
  const node = el("div", { class: "ctl" }, el("label", { text: "setpoint" }), down, shown, up, mode, status);
  const update = (d) => {
    const state = (d.capabilities || {})[capability] || {};
    setpoint = typeof state.heating_setpoint === "number" ? state.heating_setpoint : null;
    shown.textContent = formatValue("heating_setpoint", setpoint);
    if (state.mode && document.activeElement !== mode) {
      if (![...mode.options].some((o) => o.value === state.mode)) mode.append(el("option", { value: state.mode, text: state.mode }));
      mode.value = state.mode;
    }
  };
  return { node, update };
}

function coverControls(device, capability, onState) {
  const position = slider(device, capability, "position", "set_position", "position", { min: 0, max: 100 }, 1, onState);
  const status = position.node.querySelector(".status");
  const buttons = ["open", "stop", "close"].map((command) =>
    el("button", { type: "button", "data-control": `${capability}-${command}`,
                   onclick: () => runCommand(device, capability, command, {}, status, onState) }, command));
  position.node.insertBefore(el("span", {}, ...buttons), status);
  return position;
}

function lockControls(device, capability, onState) {
  const status = el("span", { class: "status", "data-status": capability });
  const buttons = ["lock", "unlock"].map((command) =>
    el("button", { type: "button", "data-control": `${capability}-${command}`,
                   onclick: () => runCommand(device, capability, command, {}, status, onState) }, command));
  return { node: el("div", { class: "ctl" }, el("label", { text: "lock" }), ...buttons, status), update: () => {} };
}

// The controls a device's capabilities call for (none for sensors).
export function controlsFor(device, onState) {
  const controls = [];
  for (const capability of Object.keys(device.capabilities || {}).sort()) {
    const base = baseCapability(capability);
    if (base === "switch") controls.push(switchControl(device, capability, onState));
    else if (base === "level") controls.push(slider(device, capability, "level", "set_level", "level", { min: 0, max: 100 }, 1, onState));
    else if (base === "color_temperature") {
      controls.push(slider(device, capability, "kelvin", "set_color_temperature", "kelvin",
                           limits(device, capability, "kelvin", KELVIN), 50, onState));
    } else if (base === "thermostat") controls.push(thermostatControls(device, capability, onState));
    else if (base === "window_covering") controls.push(coverControls(device, capability, onState));
    else if (base === "lock") controls.push(lockControls(device, capability, onState));
  }
  return controls;
}
