/* auzap user page: the live socket `/ws?token=`, with a heartbeat and reconnects.

   Reconnects back off exponentially with jitter (0.5 s doubling to 15 s, each delay drawn
   between half and all of it) and show "Offline — reconnecting in N s".  Close codes: 4401 the
   token expired (sign in again), 4409 another tab of this user took the last socket (pause
   instead of evicting it in turn), 1013 we fell behind (come back at once for a fresh snapshot). */

import { $ } from "./util.js";

const PING_EVERY_MS = 20000;       // the socket's heartbeat
const PONG_WAIT_MS = 10000;        // no answer within this: the socket is dead, reconnect
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15000;

/* hooks: token() -> the JWT, onFrame(frame), onSignedOut(message). */
export function createSocket(hooks) {
  return {
    ws: null, attempt: 0, retryTimer: null, pingTimer: null, pongTimer: null, stopped: true, opened: false,

    everOpened: false,  // since sign-in: a refusal before any socket means a bad token, not an old one

    start() { this.stopped = false; this.attempt = 0; this.everOpened = false; this.open(); },
    stop() {
      this.stopped = true;
      clearTimeout(this.retryTimer); clearInterval(this.pingTimer); clearTimeout(this.pongTimer);
      if (this.ws) { this.ws.onclose = null; this.ws.close(1000); this.ws = null; }
    },
    open() {
      clearTimeout(this.retryTimer);
      if (this.stopped) return;
      setLive("connecting", this.attempt ? "Reconnecting…" : "Connecting…");
      const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws?token=" + encodeURIComponent(hooks.token());
      const ws = new WebSocket(url);
      this.ws = ws; this.opened = false;
      ws.onopen = () => {
        this.opened = true; this.everOpened = true; this.attempt = 0;
        setLive("live", "Live");
        clearInterval(this.pingTimer);
        this.pingTimer = setInterval(() => this.ping(), PING_EVERY_MS);
      };
      ws.onmessage = (ev) => {
        clearTimeout(this.pongTimer);
        let frame; try { frame = JSON.parse(ev.data); } catch { return; }
        hooks.onFrame(frame);
      };
      ws.onclose = (ev) => this.closed(ws, ev);
    },
    ping() {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      this.ws.send(JSON.stringify({ type: "ping" }));
      clearTimeout(this.pongTimer);
      // A socket that answers nothing is dead even if the browser has not noticed yet.
      this.pongTimer = setTimeout(() => { if (this.ws) this.ws.close(4000, "no pong"); }, PONG_WAIT_MS);
    },
    async closed(ws, ev) {
      if (ws !== this.ws) return;
      clearInterval(this.pingTimer); clearTimeout(this.pongTimer);
      this.ws = null;
      if (this.stopped) return;
      if (ev.code === 4401) { hooks.onSignedOut("Your session has expired. Sign in again."); return; }
      if (ev.code === 4409) {
        // Another tab of this user took the last free socket: fighting back would evict it.
        setLive("paused", "Paused: open in too many tabs");
        $("live-retry").hidden = false; $("live-retry").textContent = "Resume";
        return;
      }
      if (!this.opened && await this.tokenRefused()) return;
      // 1013: we fell behind, come back at once for a fresh snapshot; anything else: back off.
      const delay = ev.code === 1013 && this.attempt === 0 ? 200 : this.backoff();
      this.attempt += 1;
      this.countdown(delay);
    },
    /* The upgrade was refused: a 401 (expired token) looks like any network failure to a WebSocket. */
    async tokenRefused() {
      try {
        const res = await fetch("/api/whatsapp/instance", { headers: { Authorization: "Bearer " + hooks.token() } });
        if (res.status === 401) {
          hooks.onSignedOut(this.everOpened ? "Your session has expired. Sign in again."
            : "The service did not accept this token: paste a current access token of this project.");
          return true;
        }
      } catch { /* the server is away: keep retrying */ }
      return false;
    },
    backoff() {
      const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
      return Math.round(ceiling / 2 + Math.random() * ceiling / 2);  // jitter: herds of tabs spread out
    },
    countdown(delay) {
      const until = Date.now() + delay;
      const tick = () => {
        if (this.stopped || this.ws) return;
        const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
        setLive("offline", left > 0 ? `Offline — reconnecting in ${left} s` : "Offline — reconnecting…");
        if (Date.now() >= until) { this.open(); return; }
        this.retryTimer = setTimeout(tick, Math.min(1000, until - Date.now()));
      };
      $("live-retry").hidden = false; $("live-retry").textContent = "Retry now";
      tick();
    },
    retryNow() { if (!this.ws && !this.stopped) { this.attempt = 0; this.open(); } },
  };
}

function setLive(kind, text) {
  const node = $("live");
  node.dataset.state = kind;
  node.textContent = text;
  if (kind === "live" || kind === "connecting") $("live-retry").hidden = true;
  document.body.dataset.live = kind;
}
