// How capability values read on screen.
const UNITS = {
  temperature: "°C", local_temperature: "°C", heating_setpoint: "°C", cooling_setpoint: "°C",
  device_temperature: "°C", humidity: "%", level: "%", position: "%", battery: "%", percentage: "%",
  power: "W", apparent_power: "VA", energy: "kWh", voltage: "V", current: "A", frequency: "Hz",
  illuminance: "lx", kelvin: "K", pressure: "hPa", co2: "ppm", pm25: "µg/m³", battery_voltage: "V",
  saturation: "%", hue: "°",
};
const BOOLEAN_WORDS = {
  on: ["on", "off"], occupied: ["occupied", "clear"], open: ["open", "closed"], wet: ["wet", "dry"],
  detected: ["detected", "clear"], locked: ["locked", "unlocked"], active: ["active", "idle"],
  tampered: ["tampered", "ok"],
};

export function baseCapability(key) { return key.split("@")[0]; }

export function unitOf(attribute) { return UNITS[attribute] || ""; }

export function formatValue(attribute, value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "boolean") {
    const words = BOOLEAN_WORDS[attribute];
    return words ? words[value ? 0 : 1] : String(value);
  }
  if (typeof value === "number") {
    const digits = Number.isInteger(value) ? 0 : Math.abs(value) < 10 ? 2 : 1;
    const unit = unitOf(attribute);
    return `${value.toFixed(digits)}${unit ? " " + unit : ""}`;
  }
  return String(value).replaceAll("_", " ");
}

// Capabilities of several attributes show the attribute's name; the others their own.
const MULTI = new Set(["thermostat", "color", "fan"]);

export function label(capability, attribute) {
  const base = baseCapability(capability);
  const instance = capability.includes("@") ? ` ${capability.split("@")[1]}` : "";
  return `${MULTI.has(base) ? attribute : base}${instance}`.replaceAll("_", " ");
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export function ago(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}
