// The live stream (server-sent events) read with fetch, so the token travels in a header.
import { session } from "./api.js";

export class Live {
  constructor(onMessage, onState) {
    this.onMessage = onMessage;
    this.onState = onState;
    this.controller = null;
    this.stopped = true;
    this.delay = 1000;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  async connect() {
    if (this.stopped) return;
    const controller = new AbortController();
    this.controller = controller;
    let reason = "closed";
    try {
      const response = await fetch("/api/v1/stream", {
        headers: { Authorization: `Bearer ${session.token}`, Accept: "text/event-stream" },
        signal: controller.signal, credentials: "omit", cache: "no-store",
      });
      if (response.status === 401) { this.onState("unauthorized"); return; }
      if (!response.ok || !response.body) throw new Error(`stream: HTTP ${response.status}`);
      this.delay = 1000;
      this.onState("open");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          this.dispatch(block);
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
      reason = String(error);
    }
    if (this.stopped || this.controller !== controller) return;
    this.onState("reconnecting", reason);
    setTimeout(() => this.connect(), this.delay);
    this.delay = Math.min(this.delay * 2, 15000);
  }

  dispatch(block) {
    let kind = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      if (line.startsWith("event:")) kind = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trim());
    }
    if (!data.length) return;
    try { this.onMessage(kind, JSON.parse(data.join("\n"))); } catch (error) { console.error(error); }
  }
}
