// Telemetry charts of one device: uPlot lines of the server's buckets (min, mean, max) and
// timelines for binary sensors; new values are appended as the live stream brings them.
import { api } from "./api.js";
import { baseCapability, el, label, unitOf } from "./format.js";

export const CHARTED = {
  temperature: "temperature", humidity: "humidity", power: "power", energy: "energy",
  illuminance: "illuminance", battery: "battery", device_temperature: "temperature",
  pressure: "pressure", co2: "co2", voltage: "voltage", current: "current",
  thermostat: "local_temperature", level: "level",
};
export const TIMELINES = { occupancy: "occupied", contact: "open", water_leak: "wet", smoke: "detected" };

export function seriesOf(device) {
  const found = [];
  for (const capability of Object.keys(device.capabilities || {}).sort()) {
    const base = baseCapability(capability);
    if (TIMELINES[base]) found.push({ capability, attribute: TIMELINES[base], kind: "timeline" });
    else if (CHARTED[base]) found.push({ capability, attribute: CHARTED[base], kind: "line" });
  }
  return found;
}

function bucketQuery(deviceId, series, seconds) {
  const until = new Date();
  const since = new Date(until.getTime() - seconds * 1000);
  const q = new URLSearchParams({ capability: series.capability, attribute: series.attribute,
                                  since: since.toISOString(), until: until.toISOString(), buckets: "240" });
  return `/api/v1/devices/${encodeURIComponent(deviceId)}/telemetry/buckets?${q}`;
}

class LineChart {
  constructor(box, series, seconds) {
    this.series = series;
    this.seconds = seconds;
    this.data = [[], [], [], []]; // time, mean, min, max
    this.box = box;
    const unit = unitOf(series.attribute);
    this.plot = new uPlot({
      width: Math.max(260, box.clientWidth - 4), height: 200,
      scales: { x: { time: true, range: () => [Date.now() / 1000 - this.seconds, Date.now() / 1000 + this.seconds / 60] } },
      series: [
        {},
        { label: `${series.attribute}${unit ? " (" + unit + ")" : ""}`, stroke: "#2e62d9", width: 2,
          points: { show: true, size: 4 } },
        { label: "min", stroke: "#9bb3ec", width: 1, dash: [4, 4] },
        { label: "max", stroke: "#9bb3ec", width: 1, dash: [4, 4] },
      ],
      axes: [{}, { size: 50 }],
    }, this.data, box);
  }

  load(body) {
    const d = [[], [], [], []];
    for (const b of body.buckets) {
      d[0].push(Date.parse(b.ts) / 1000 + body.bucket_seconds / 2);
      d[1].push(b.avg); d[2].push(b.min); d[3].push(b.max);
    }
    this.data = d;
    this.plot.setData(d);
  }

  add(ts, value) {
    if (typeof value !== "number" && typeof value !== "boolean") return;
    const v = Number(value);
    const t = Date.parse(ts) / 1000;
    const d = this.data;
    const i = d[0].length && t < d[0][d[0].length - 1] ? d[0].findIndex((x) => x > t) : d[0].length;
    for (const [k, x] of [[0, t], [1, v], [2, v], [3, v]]) d[k].splice(i, 0, x);
    const from = Date.now() / 1000 - this.seconds;
    while (d[0].length && d[0][0] < from) for (const col of d) col.shift();
    this.plot.setData(d);
    this.box.dataset.points = String(d[0].length);
  }

  resize() { this.plot.setSize({ width: Math.max(260, this.box.clientWidth - 4), height: 200 }); }
  destroy() { this.plot.destroy(); }
}

class Timeline {
  constructor(box, series, seconds) {
    this.series = series;
    this.seconds = seconds;
    this.bar = el("div", { class: "timeline", "aria-label": `${series.capability} timeline` });
    this.axis = el("div", { class: "timeline-axis" }, el("span"), el("span", { text: "now" }));
    box.append(this.bar, this.axis);
    this.box = box;
    this.spans = []; // [start, end] seconds when the state was on
    this.onSince = null;
  }

  load(body) {
    this.spans = [];
    for (const b of body.buckets) {
      if (b.max >= 1) {
        const start = Date.parse(b.ts) / 1000;
        const last = this.spans[this.spans.length - 1];
        if (last && start - last[1] < 1) last[1] = start + body.bucket_seconds;
        else this.spans.push([start, start + body.bucket_seconds]);
      }
    }
    this.draw();
  }

  add(ts, value) {
    const t = Date.parse(ts) / 1000;
    if (value) { if (this.onSince === null) this.onSince = t; }
    else if (this.onSince !== null) { this.spans.push([this.onSince, t]); this.onSince = null; }
    else this.spans.push([t, t + 1]);
    this.draw();
  }

  draw() {
    const now = Date.now() / 1000;
    const from = now - this.seconds;
    const spans = this.onSince !== null ? [...this.spans, [this.onSince, now]] : this.spans;
    this.bar.replaceChildren(...spans.filter(([, e]) => e > from).map(([s, e]) => {
      const seg = el("div", { class: "seg" });
      seg.style.left = `${Math.max(0, (s - from) / this.seconds) * 100}%`;
      seg.style.width = `${Math.max(0.3, ((Math.min(e, now) - Math.max(s, from)) / this.seconds) * 100)}%`;
      return seg;
    }));
    this.axis.firstChild.textContent = new Date(from * 1000).toLocaleString();
    this.box.dataset.points = String(spans.length);
  }

  resize() { this.draw(); }
  destroy() {}
}

export class DeviceCharts {
  constructor(container, device, seconds) {
    this.container = container;
    this.device = device;
    this.seconds = seconds;
    this.charts = new Map();
    this.generation = 0;
  }

  async load() {
    const generation = ++this.generation;
    for (const chart of this.charts.values()) chart.destroy();
    this.charts.clear();
    this.container.replaceChildren();
    const series = seriesOf(this.device);
    if (!series.length) this.container.append(el("p", { class: "hint", text: "This device reports nothing to chart." }));
    for (const s of series) {
      const box = el("div", { class: "chart", "data-chart": `${s.capability}.${s.attribute}` },
                     el("h3", { text: label(s.capability, s.attribute) }));
      this.container.append(box);
      const chart = s.kind === "timeline" ? new Timeline(box, s, this.seconds) : new LineChart(box, s, this.seconds);
      this.charts.set(`${s.capability}.${s.attribute}`, chart);
      try {
        const { data } = await api("GET", bucketQuery(this.device.id, s, this.seconds));
        if (generation !== this.generation) return;
        chart.load(data);
        box.dataset.points = String(data.buckets.length);
        box.dataset.loaded = "true";
      } catch (error) {
        box.append(el("p", { class: "error", text: error.message }));
      }
    }
  }

  event(message) {
    const chart = this.charts.get(`${message.capability}.${message.attribute}`);
    if (chart) chart.add(message.ts, message.value);
  }

  resize() { for (const chart of this.charts.values()) chart.resize(); }
  destroy() { this.generation++; for (const chart of this.charts.values()) chart.destroy(); this.charts.clear(); }
}
