// Pairing through the cloud: open permit-join, count down, and show each joining device's
// interview steps as they are stored (the live stream says when to read them).
import { api } from "./api.js";
import { el } from "./format.js";

const STEPS = {
  joined: "joined", node_descriptor: "node descriptor", endpoints: "endpoints", simple_descriptor: "clusters",
  basic_attributes: "basic attributes", interviewed: "interviewed", bind: "bound",
  configure_reporting: "reporting configured", state_read: "state read", adopted: "ready",
};

export class PairingPanel {
  constructor(hubId, hub) {
    this.hubId = hubId;
    this.hub = hub;
    this.cursor = 0;
    this.until = null;
    this.joining = new Map();
    this.timer = null;
    this.button = el("button", { type: "button", class: "primary", "data-control": "pairing", onclick: () => this.toggle() },
                     "Pair devices");
    this.head = el("div", { class: "countdown", "data-pairing": "countdown" });
    this.list = el("ol", { "data-pairing": "devices" });
    this.error = el("p", { class: "error" });
    this.node = el("div", { class: "pairing", hidden: true }, this.head, this.list, this.error);
  }

  get open() { return this.until !== null && this.until > Date.now(); }

  async toggle() {
    this.button.disabled = true;
    this.error.textContent = "";
    try {
      if (this.open) {
        await api("DELETE", `/api/v1/hubs/${encodeURIComponent(this.hubId)}/pairing`);
        this.until = null;
      } else {
        const { data } = await api("POST", `/api/v1/hubs/${encodeURIComponent(this.hubId)}/pairing`, { duration: 120 });
        this.until = Date.parse(data.until);
        this.cursor = data.cursor;
        this.joining.clear();
        this.list.replaceChildren();
        this.node.hidden = false;
        this.tick();
      }
    } catch (error) {
      this.node.hidden = false;
      this.error.textContent = error.message;
    }
    this.button.disabled = false;
    this.draw();
  }

  hubChanged(hub) {
    const until = hub.pairing_until ? Date.parse(hub.pairing_until) : null;
    if (until && until > Date.now() && until !== this.until) {
      this.until = until;
      this.node.hidden = false;
      this.tick();
      this.refresh();
    }
    this.draw();
  }

  tick() {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.draw();
      if (!this.open) { clearInterval(this.timer); this.timer = null; }
    }, 1000);
  }

  stop() { if (this.timer) clearInterval(this.timer); this.timer = null; }

  async refresh() {
    try {
      const { data } = await api("GET", `/api/v1/hubs/${encodeURIComponent(this.hubId)}/pairing?after=${this.cursor}`);
      this.cursor = data.cursor;
      this.until = data.open && data.until ? Date.parse(data.until) : null;
      for (const event of data.events) this.apply(event);
      this.node.hidden = false;
      this.tick();
    } catch (error) {
      this.error.textContent = error.message;
    }
    this.draw();
  }

  apply(event) {
    if (!event.ieee) return;
    let dev = this.joining.get(event.ieee);
    if (!dev) {
      dev = { steps: [], failures: [], model: null, capabilities: [], node: el("li", { "data-joining": event.ieee }) };
      this.joining.set(event.ieee, dev);
      this.list.append(dev.node);
    }
    dev.model = event.model || dev.model;
    if (event.capabilities) dev.capabilities = event.capabilities;
    const step = STEPS[event.step];
    if (event.ok === false) dev.failures.push(`${event.step}: ${event.detail || "failed"}`);
    else if (step && !dev.steps.includes(step)) dev.steps.push(step);
    const parts = [el("strong", { text: `${dev.model || ""} ${event.ieee}`.trim() }), ` ${dev.steps.join(" → ")}`];
    if (dev.capabilities.length) parts.push(el("div", { text: `capabilities: ${dev.capabilities.join(", ")}` }));
    for (const failure of dev.failures) parts.push(el("div", { class: "fail", text: failure }));
    dev.node.replaceChildren(...parts);
  }

  draw() {
    const open = this.open;
    this.button.textContent = open ? "Stop pairing" : "Pair devices";
    this.button.disabled = this.hub()?.online === false && !open;
    if (open) {
      const left = Math.max(0, Math.round((this.until - Date.now()) / 1000));
      this.head.textContent = `Permit join open: ${left} s left. Power on or reset a device to pair it.`;
    } else if (!this.node.hidden) {
      this.head.textContent = this.joining.size ? "Permit join closed." : "Permit join closed; no device joined.";
    }
    this.node.dataset.open = String(open);
  }
}
