/* auzap user page: sign in, connect WhatsApp, conversations, live over /ws.
   Plain JavaScript, no build step.  The page only ever holds the user's own token. */
"use strict";

const TOKEN_KEY = "auzap-token";
const SEEN_KEY = "auzap-seen";
const QR_LIFETIME_S = 45;          // Evolution's qrTimeout: each QR lives about 45 s
const PING_EVERY_MS = 20000;       // the socket's heartbeat
const PONG_WAIT_MS = 10000;        // no answer within this: the socket is dead, reconnect
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15000;
const TYPING_FOR_MS = 25000;       // WhatsApp repeats "composing" while the person types
const STATUS_RANK = { pending: 0, server_ack: 1, delivered: 2, read: 3, played: 4, error: 5, deleted: 6 };
const STATUS_TEXT = { disconnected: "Not connected", connecting: "Connecting…", waiting_qr: "Waiting for scan",
  open: "Connected", needs_attention: "Needs attention", none: "Not connected" };
const RECEIPT_TEXT = { pending: "Sending", server_ack: "Sent", delivered: "Delivered", read: "Read", played: "Played", error: "Not sent" };

const $ = (id) => document.getElementById(id);
const DEMO = document.documentElement.dataset.demo === "true";

const state = {
  token: null, claims: null,
  instance: null,                 // InstanceView, or null before the first connect
  conversations: [], nextConversations: null,
  selected: null,                 // conversation id
  messages: new Map(),            // id -> MessageView of the selected conversation
  nextMessages: null,
  typing: new Map(),              // remote_jid -> until (ms)
  seen: loadSeen(),               // conversation id -> last_message_at the user has seen here
  qrAt: 0,                        // when the current QR arrived (ms)
};

/* ---------- small helpers ---------- */

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}
const SVG_NS = "http://www.w3.org/2000/svg";
function icon(path, size) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24"); svg.setAttribute("width", size || 16); svg.setAttribute("height", size || 16);
  svg.setAttribute("aria-hidden", "true");
  const p = document.createElementNS(SVG_NS, "path"); p.setAttribute("fill", "currentColor"); p.setAttribute("d", path);
  svg.append(p); return svg;
}
const ICONS = {
  check: "M9 16.2 4.8 12l-1.4 1.4L9 19 21 7l-1.4-1.4z",
  checks: "M1.5 12.6 3 11.2l4.6 4.6-1.4 1.4zm5.3 0 1.4-1.4 4 4L22 5.8l1.4 1.4-11.2 11.2zm10.7-6.8-5.9 5.9-1.4-1.4 5.9-5.9z",
  clock: "M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20Zm0 2a8 8 0 1 1 0 16 8 8 0 0 1 0-16Zm-1 3v6l5 3 1-1.6-4-2.4V7z",
  alert: "M12 2 1 21h22L12 2Zm-1 7h2v6h-2V9Zm0 8h2v2h-2v-2Z",
};
function receipt(status) {
  const shape = { pending: "clock", server_ack: "check", error: "alert" }[status] || "checks";
  const span = el("span", { class: "receipt", "data-status": status, role: "img", "aria-label": RECEIPT_TEXT[status] || status, title: RECEIPT_TEXT[status] || status });
  span.append(icon(ICONS[shape], 16));
  return span;
}
function initials(name) {
  const words = String(name || "?").replace(/[^\p{L}\p{N} ]/gu, " ").trim().split(/\s+/);
  return ((words[0] || "?")[0] + (words.length > 1 ? words[words.length - 1][0] : "")).toUpperCase();
}
function avatarColor(key) {
  let h = 0; for (const ch of String(key)) h = (h * 31 + ch.codePointAt(0)) % 360;
  return `hsl(${h} 42% 46%)`;
}
function formatPhone(digits) {
  if (!digits) return "";
  const d = String(digits);
  if (d.startsWith("55") && d.length >= 12) return `+55 ${d.slice(2, 4)} ${d.slice(4, d.length - 4)}-${d.slice(-4)}`;
  return "+" + d;
}
function jidPhone(jid) { const user = String(jid || "").split("@")[0]; return /^\d{6,}$/.test(user) ? user : null; }
function timeOf(iso) {
  const d = new Date(iso); if (isNaN(d)) return "";
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
function dayOf(iso) {
  const d = new Date(iso); if (isNaN(d)) return "";
  const today = new Date(); const yesterday = new Date(Date.now() - 864e5);
  if (d.toDateString() === today.toDateString()) return "Today";
  if (d.toDateString() === yesterday.toDateString()) return "Yesterday";
  return d.toLocaleDateString([], { day: "numeric", month: "short", year: d.getFullYear() === today.getFullYear() ? undefined : "numeric" });
}
function listTime(iso) {
  const d = new Date(iso); if (isNaN(d)) return "";
  return d.toDateString() === new Date().toDateString() ? timeOf(iso) : dayOf(iso);
}
function loadSeen() { try { return JSON.parse(sessionStorage.getItem(SEEN_KEY) || "{}"); } catch { return {}; } }
function saveSeen() { sessionStorage.setItem(SEEN_KEY, JSON.stringify(state.seen)); }

/* ---------- tokens ---------- */

function decodeClaims(jwt) {
  const parts = jwt.split(".");
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(atob(b64).split("").map((c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""));
    const claims = JSON.parse(json);
    return claims && typeof claims === "object" ? claims : null;
  } catch { return null; }
}
/* A raw JWT, or a Supabase session (or the value Supabase keeps in localStorage) holding one. */
function tokenFromPaste(text) {
  const raw = text.trim().replace(/^Bearer\s+/i, "");
  if (!raw) throw new Error("Paste a token or a Supabase session first.");
  let token = raw;
  if (raw.startsWith("{")) {
    let session;
    try { session = JSON.parse(raw); } catch { throw new Error("This looks like JSON but could not be read."); }
    const found = [session, session && session.currentSession, session && session.session].find((s) => s && typeof s.access_token === "string");
    if (!found) throw new Error("This JSON has no access_token: paste the whole Supabase session.");
    token = found.access_token;
  }
  const claims = decodeClaims(token);
  if (!claims) throw new Error("This is not a JWT (it should look like xxxxx.yyyyy.zzzzz).");
  if (typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) throw new Error("This token has expired; get a fresh one.");
  return token;
}

/* ---------- HTTP ---------- */

class ApiFailure extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}
async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + state.token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiFailure(0, "offline", "The service cannot be reached right now.");
  }
  if (res.status === 401) { signOut("Your session has expired. Sign in again."); throw new ApiFailure(401, "unauthorized", "Signed out."); }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const err = (data && data.error) || {};
    throw new ApiFailure(res.status, err.code || "error", err.message || `The service answered ${res.status}.`);
  }
  return data;
}
function failToast(err, title) {
  if (err && err.status === 401) return;
  toast({ level: "error", title: title || "Something went wrong", message: err.message || String(err) });
}

/* ---------- toasts ---------- */

const TOAST_ICON = { info: "i", success: "✓", warning: "!", error: "!" };
function toast(n) {
  const level = ["info", "success", "warning", "error"].includes(n.level) ? n.level : "info";
  const close = el("button", { class: "btn ghost icon t-close", type: "button", "aria-label": "Dismiss notification" }, "×");
  const node = el("div", { class: "toast", "data-level": level, role: level === "error" ? "alert" : "status" },
    el("span", { class: "t-icon", "aria-hidden": "true" }, TOAST_ICON[level]),
    el("div", { class: "t-title" }, n.title || ""),
    close,
    el("div", { class: "t-message" }, n.message || ""));
  if (n.action === "reconnect" && !(state.instance && state.instance.status === "open")) {
    const button = el("button", { class: "btn primary small", type: "button", "data-action": "reconnect" }, "Reconnect now");
    button.addEventListener("click", async () => {
      button.disabled = true; button.textContent = "Reconnecting…";
      const ok = await connectWhatsApp();
      if (ok) dismiss(node); else { button.disabled = false; button.textContent = "Reconnect now"; }
    });
    node.append(el("div", { class: "t-actions" }, button));
  }
  close.addEventListener("click", () => dismiss(node));
  const box = $("toasts");
  box.append(node);
  while (box.children.length > 4) box.firstElementChild.remove();
  // Information fades away; problems stay until dismissed or solved.
  if (level === "info" || level === "success") setTimeout(() => dismiss(node), 9000);
  return node;
}
function dismiss(node) { node.remove(); }

/* ---------- sign in / out ---------- */

function showSignin(message) {
  $("app").hidden = true;
  $("signin").hidden = false;
  $("demo-signin").hidden = !DEMO;
  $("signin-error").textContent = message || "";
  (DEMO ? $("demo-login") : $("token-input")).focus();
}
function signIn(token) {
  state.token = token;
  state.claims = decodeClaims(token) || {};
  sessionStorage.setItem(TOKEN_KEY, token);
  $("signin").hidden = true;
  $("app").hidden = false;
  $("token-input").value = "";
  $("account-who").textContent = state.claims.email || (state.claims.user_metadata && state.claims.user_metadata.email) || ("User " + String(state.claims.sub || "").slice(0, 8));
  for (const node of document.querySelectorAll(".demo-only")) node.hidden = !DEMO;
  render();
  socket.start();
}
function signOut(message) {
  socket.stop();
  sessionStorage.removeItem(TOKEN_KEY);
  Object.assign(state, { token: null, claims: null, instance: null, conversations: [], selected: null, nextConversations: null });
  state.messages.clear();
  $("conversations").replaceChildren();
  $("toasts").replaceChildren();
  showSignin(message);
}

/* ---------- WebSocket with backoff ---------- */

const socket = {
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
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws?token=" + encodeURIComponent(state.token);
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
      onFrame(frame);
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
    if (ev.code === 4401) { signOut("Your session has expired. Sign in again."); return; }
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
      const res = await fetch("/api/whatsapp/instance", { headers: { Authorization: "Bearer " + state.token } });
      if (res.status === 401) {
        signOut(this.everOpened ? "Your session has expired. Sign in again."
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
function setLive(kind, text) {
  const node = $("live");
  node.dataset.state = kind;
  node.textContent = text;
  if (kind === "live" || kind === "connecting") $("live-retry").hidden = true;
  document.body.dataset.live = kind;
}

/* ---------- frames ---------- */

function onFrame(frame) {
  const data = frame.data;
  switch (frame.type) {
    case "snapshot":
      // First frame of every socket: the whole current state (also after a server restart).
      setInstance(data);
      if (data && data.status === "waiting_qr" && data.qr_code) {
        const updated = Date.parse(data.updated_at);
        state.qrAt = isNaN(updated) ? Date.now() : Math.min(Date.now(), updated);
      }
      refreshConversations();
      if (state.selected) loadMessages(state.selected);
      if (data) loadSettings();
      break;
    case "status":
      setInstance(Object.assign({}, state.instance || {}, data, data.status === "waiting_qr" ? {} : { qr_code: null }));
      break;
    case "qrcode":
      state.qrAt = Date.now();
      setInstance(Object.assign({}, state.instance || {}, { status: "waiting_qr", qr_code: data.qrCode }));
      break;
    case "notification":
      toast(data);
      break;
    case "message": onMessage(data); break;
    case "message_status": onMessageStatus(data); break;
    case "message_update": onMessageUpdate(data); break;
    case "presence": onPresence(data); break;
    default: break;  // pong, org.* (the organization's other numbers are not shown here)
  }
}

function setInstance(view) {
  const before = state.instance && state.instance.status;
  state.instance = view;
  if (view && view.status === "open" && before !== "open") {
    // Connected: the problems older toasts reported are solved, their buttons have nothing to do.
    for (const b of document.querySelectorAll('.toast [data-action="reconnect"]')) {
      const node = b.closest(".toast");
      if (node.dataset.level === "warning" || node.dataset.level === "error") node.remove();
      else b.closest(".t-actions").remove();
    }
  }
  render();
}

/* ---------- conversations ---------- */

let refreshing = null;
async function refreshConversations() {
  if (refreshing) return refreshing;
  refreshing = (async () => {
    try {
      const page = await api("GET", "/api/whatsapp/conversations?limit=50");
      state.conversations = page.conversations;
      state.nextConversations = page.next;
      renderConversations();
      renderChatHead();
    } catch (err) { if (err.status !== 401 && err.status !== 0) failToast(err, "Could not load your conversations"); }
    finally { refreshing = null; }
  })();
  return refreshing;
}
async function moreConversations() {
  if (!state.nextConversations) return;
  try {
    const page = await api("GET", "/api/whatsapp/conversations?limit=50&before=" + encodeURIComponent(state.nextConversations));
    const known = new Set(state.conversations.map((c) => c.id));
    state.conversations.push(...page.conversations.filter((c) => !known.has(c.id)));
    state.nextConversations = page.next;
    renderConversations();
  } catch (err) { failToast(err, "Could not load more conversations"); }
}
function conversationName(c) {
  return c.title || (c.contact && c.contact.push_name) || formatPhone(jidPhone(c.remote_jid)) || c.remote_jid;
}
function unreadOf(c) {
  if (c.id === state.selected) return 0;
  const seen = state.seen[c.id];
  if (seen && c.last_message_at && Date.parse(c.last_message_at) <= Date.parse(seen)) return 0;
  return c.unread_count || 0;
}
function isTyping(jid) { const until = state.typing.get(jid); return until && until > Date.now(); }

function renderConversations() {
  const list = $("conversations");
  list.replaceChildren();
  for (const c of state.conversations) {
    const name = conversationName(c);
    const unread = unreadOf(c);
    const last = c.last_message;
    const preview = el("span", { class: "conv-preview" });
    if (isTyping(c.remote_jid)) { preview.classList.add("typing"); preview.append("typing…"); }
    else if (last) {
      if (last.from_me) preview.append(receipt(last.status));
      preview.append(el("span", { class: "text" }, last.status === "deleted" ? "Message deleted" : (last.text || `[${last.type}]`)));
    }
    const avatar = el("span", { class: "avatar", "aria-hidden": "true" }, initials(name));
    avatar.style.background = avatarColor(c.remote_jid);
    const button = el("button", {
      class: "conv" + (unread ? " unread" : ""), type: "button", "data-id": c.id, "data-jid": c.remote_jid,
      "aria-current": c.id === state.selected ? "true" : "false",
      "aria-label": `${name}${unread ? `, ${unread} unread` : ""}`,
    }, avatar,
      el("span", { class: "conv-title" }, name),
      el("span", { class: "conv-time" }, c.last_message_at ? listTime(c.last_message_at) : ""),
      preview,
      unread ? el("span", { class: "unread-badge", "aria-hidden": "true" }, String(unread)) : el("span"));
    button.addEventListener("click", () => selectConversation(c.id));
    list.append(el("li", {}, button));
  }
  $("conversations-empty").hidden = state.conversations.length > 0;
  $("more-conversations").hidden = !state.nextConversations;
}

async function selectConversation(id) {
  state.selected = id;
  const c = state.conversations.find((x) => x.id === id);
  if (c) { state.seen[id] = c.last_message_at || new Date().toISOString(); saveSeen(); }
  state.messages.clear();
  state.nextMessages = null;
  render();
  renderConversations();
  $("messages").replaceChildren();
  await loadMessages(id);
  $("compose").focus();
}
async function loadMessages(id, before) {
  try {
    const q = "?limit=50" + (before ? "&before=" + encodeURIComponent(before) : "");
    const page = await api("GET", `/api/whatsapp/conversations/${encodeURIComponent(id)}/messages${q}`);
    if (state.selected !== id) return;
    if (!before) state.messages.clear();
    for (const m of page.messages) mergeMessage(m);
    state.nextMessages = page.next;
    renderMessages(!before);
  } catch (err) {
    if (err.status === 404) { state.selected = null; render(); refreshConversations(); return; }
    if (err.status !== 0) failToast(err, "Could not load the messages");
  }
}
/* Statuses only move forward: a late copy of a message (the send's answer after its receipts)
   keeps the newer status. */
function keepStatus(old, m) {
  if (old && STATUS_RANK[old.status] > STATUS_RANK[m.status]) return Object.assign({}, m, { status: old.status });
  return m;
}
function mergeMessage(m) { state.messages.set(m.id, keepStatus(state.messages.get(m.id), m)); }

function onMessage(m) {
  const c = state.conversations.find((x) => x.id === m.conversation_id);
  if (!m.from_me) {
    const sender = m.remote_jid;
    state.typing.delete(sender); if (m.sender_jid) state.typing.delete(m.sender_jid);
  }
  if (!c) { refreshConversations(); }
  else {
    const repeat = c.last_message && c.last_message.id === m.id;  // an echo, or a frame seen twice
    if (repeat) c.last_message = keepStatus(c.last_message, m);
    else if (!c.last_message_at || Date.parse(m.timestamp) >= Date.parse(c.last_message_at)) {
      c.last_message = m; c.last_message_at = m.timestamp;
    }
    if (!repeat && !m.from_me && m.conversation_id !== state.selected) c.unread_count = (c.unread_count || 0) + 1;
    state.conversations.sort((a, b) => (Date.parse(b.last_message_at) || 0) - (Date.parse(a.last_message_at) || 0));
    renderConversations();
  }
  if (m.conversation_id === state.selected) {
    state.seen[m.conversation_id] = m.timestamp; saveSeen();
    mergeMessage(m);
    renderMessages(true);
    renderChatHead();
  }
}
function onMessageStatus(s) {
  const m = state.messages.get(s.message_id);
  if (m && STATUS_RANK[s.status] > STATUS_RANK[m.status]) { state.messages.set(m.id, Object.assign({}, m, { status: s.status })); renderMessages(false); }
  const c = state.conversations.find((x) => x.last_message && x.last_message.id === s.message_id);
  if (c && STATUS_RANK[s.status] > STATUS_RANK[c.last_message.status]) {
    c.last_message = Object.assign({}, c.last_message, { status: s.status });
    renderConversations();
  }
}
function onMessageUpdate(m) {
  if (state.messages.has(m.id)) { state.messages.set(m.id, m); renderMessages(false); }
  const c = state.conversations.find((x) => x.last_message && x.last_message.id === m.id);
  if (c) { c.last_message = m; renderConversations(); }
}
function onPresence(p) {
  const typing = p.presence === "composing" || p.presence === "recording";
  if (typing) state.typing.set(p.remote_jid, Date.now() + TYPING_FOR_MS); else state.typing.delete(p.remote_jid);
  renderConversations();
  renderChatHead();
  if (typing) setTimeout(() => { renderConversations(); renderChatHead(); }, TYPING_FOR_MS + 50);
}

/* ---------- rendering ---------- */

function render() {
  const view = state.instance;
  const status = view ? view.status : "none";
  const pill = $("wa-status");
  pill.dataset.status = status;
  pill.textContent = STATUS_TEXT[status] || status;
  const open = status === "open";
  $("account-phone").textContent = view && view.phone_number ? formatPhone(view.phone_number) : (open ? "Connected" : "No number connected");
  $("logout").hidden = !(view && ["open", "connecting", "waiting_qr"].includes(status));

  // Which main panel: the chat, the connect panel, or "pick a conversation".
  const chatShown = Boolean(state.selected);
  $("chat").hidden = !chatShown;
  $("connect-panel").hidden = chatShown || open;
  $("idle-panel").hidden = chatShown || !open;
  $("app").dataset.pane = chatShown ? "chat" : (open ? "list" : "connect");
  renderConnect(view);
  renderChatHead();
  const canSend = open;
  $("compose").disabled = !canSend; $("send").disabled = !canSend;
  $("compose-hint").hidden = canSend;
  $("compose-hint").textContent = canSend ? "" : "Connect your WhatsApp to send messages.";
}

function renderConnect(view) {
  const status = view ? view.status : "none";
  const connect = $("connect");
  const busy = status === "connecting" || status === "waiting_qr";
  // A number is known while a session that dropped comes back: no QR code is needed then.
  const resuming = status === "connecting" && Boolean(view && view.phone_number);
  connect.textContent = status === "needs_attention" || resuming ? "Reconnect now" : (busy ? "Get a new code" : "Connect WhatsApp");
  $("demo-scan").disabled = status !== "waiting_qr";
  const lead = { none: "Link your phone to start receiving and answering messages here.",
    disconnected: "Your WhatsApp is not connected. Connect it to receive and answer messages here.",
    connecting: "Asking WhatsApp for a QR code…",
    waiting_qr: "Scan the QR code with your phone to finish.",
    needs_attention: "WhatsApp could not reconnect by itself. Connect again to fix it." }[status];
  $("connect-lead").textContent = resuming ? `The connection of ${formatPhone(view.phone_number)} dropped and is coming back; no new QR code is needed. Your conversations are safe.` : (lead || "");
  $("connect-panel").dataset.mode = resuming ? "resume" : "qr";
  $("connect-title").textContent = resuming ? "Reconnecting your WhatsApp" : "Connect your WhatsApp";
  const img = $("qr"), frame = $("qr-frame");
  if (status === "waiting_qr" && view.qr_code) {
    if (img.getAttribute("src") !== view.qr_code) img.src = view.qr_code;
    img.hidden = false; $("qr-placeholder").hidden = true;
    frame.dataset.state = "qr";
  } else {
    img.hidden = true; img.removeAttribute("src"); $("qr-placeholder").hidden = false;
    frame.dataset.state = status === "connecting" ? "loading" : "none";
    $("qr-placeholder-text").textContent = resuming ? "Reconnecting…" : (status === "connecting" ? "Getting a QR code…" : "The QR code appears here");
  }
  tickQr();
}
function tickQr() {
  const view = state.instance;
  const expiry = $("qr-expiry"), fill = $("qr-bar-fill");
  if (!view || view.status !== "waiting_qr" || !view.qr_code) { expiry.textContent = ""; expiry.removeAttribute("data-soon"); return; }
  const age = Math.max(0, (Date.now() - state.qrAt) / 1000);
  const left = Math.ceil(QR_LIFETIME_S - age);
  if (left > 0) {
    expiry.textContent = `Code expires in ${left} s`;
    expiry.dataset.soon = String(left <= 10);
    fill.style.width = Math.max(0, Math.min(100, 100 * left / QR_LIFETIME_S)) + "%";
    $("qr-frame").dataset.state = "qr";
  } else {
    // WhatsApp sends a fresh code by itself; until it arrives this one may no longer work.
    expiry.textContent = `Code is ${Math.floor(age)} s old — a new one is on its way`;
    expiry.dataset.soon = "true";
    fill.style.width = "0%";
    $("qr-frame").dataset.state = "expired";
  }
}

function renderChatHead() {
  const c = state.conversations.find((x) => x.id === state.selected);
  if (!state.selected) return;
  const name = c ? conversationName(c) : "Conversation";
  $("chat-title").textContent = name;
  const avatar = $("chat-avatar");
  avatar.textContent = initials(name);
  avatar.style.background = avatarColor(c ? c.remote_jid : name);
  const sub = $("chat-sub");
  if (c && isTyping(c.remote_jid)) { sub.textContent = "typing…"; sub.classList.add("typing"); }
  else {
    sub.classList.remove("typing");
    const phone = c && ((c.contact && c.contact.phone_number) || jidPhone(c.remote_jid));
    sub.textContent = c && c.is_group ? "Group" : (phone ? formatPhone(phone) : "");
  }
}

function renderMessages(scrollToEnd) {
  const box = $("messages");
  const nearEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const list = [...state.messages.values()].sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp) || (a.id < b.id ? -1 : 1));
  const c = state.conversations.find((x) => x.id === state.selected);
  const nodes = [];
  if (state.nextMessages) {
    nodes.push(el("button", { class: "btn small older", type: "button", onclick: () => loadMessages(state.selected, state.nextMessages) }, "Load older messages"));
  }
  let day = null;
  for (const m of list) {
    const d = dayOf(m.timestamp);
    if (d !== day) { nodes.push(el("div", { class: "day" }, d)); day = d; }
    const deleted = m.status === "deleted";
    const meta = el("span", { class: "meta" });
    if (m.auto_reply) meta.append(el("span", { class: "tag", title: "Sent by the automatic assistant" }, "auto"));
    meta.append(el("time", { datetime: m.timestamp }, timeOf(m.timestamp)));
    if (m.from_me && !deleted) meta.append(receipt(m.status));
    const bubble = el("div", { class: "bubble" + (m.from_me ? " out" : "") + (deleted ? " deleted" : ""), "data-id": m.id, "data-status": m.status },
      c && c.is_group && !m.from_me ? el("div", { class: "sender" }, m.push_name || jidPhone(m.sender_jid) || "") : null,
      meta,
      el("span", { class: "body" }, deleted ? "This message was deleted" : (m.text || `[${m.type}]`)));
    nodes.push(bubble);
  }
  box.replaceChildren(...nodes);
  if (scrollToEnd || nearEnd) box.scrollTop = box.scrollHeight;
}

/* ---------- actions ---------- */

async function connectWhatsApp() {
  $("connect-error").textContent = "";
  const button = $("connect");
  button.disabled = true;
  try {
    const body = await api("POST", "/api/whatsapp/connect");
    if (body && body.instance) {
      if (body.instance.status === "waiting_qr" && body.instance.qr_code && (!state.instance || state.instance.qr_code !== body.instance.qr_code)) state.qrAt = Date.now();
      setInstance(body.instance);
    }
    loadSettings();
    return true;
  } catch (err) {
    if (err.status !== 401) {
      $("connect-error").textContent = err.message;
      failToast(err, "Could not connect WhatsApp");
    }
    return false;
  } finally { button.disabled = false; }
}
async function logoutWhatsApp(ev) {
  ev.preventDefault();
  $("logout-dialog").close();
  try { const body = await api("POST", "/api/whatsapp/logout"); if (body) setInstance(body.instance); }
  catch (err) { failToast(err, "Could not log out"); }
}
async function demoScan() {
  try { await api("POST", "/api/demo/scan"); }
  catch (err) { failToast(err, "The simulated scan failed"); }
}
async function sendMessage(to, text) {
  const body = await api("POST", "/api/whatsapp/messages", { to, text });
  return body.message;
}
async function sendFromComposer(ev) {
  ev.preventDefault();
  const box = $("compose");
  const text = box.value;
  const c = state.conversations.find((x) => x.id === state.selected);
  if (!text.trim() || !c) return;
  box.value = ""; autosize();
  try {
    const m = await sendMessage(c.remote_jid, text);
    onMessage(m);
  } catch (err) {
    box.value = text; autosize();
    failToast(err, "Message not sent");
  }
}
async function sendNewChat(ev) {
  ev.preventDefault();
  const to = $("new-chat-to").value.replace(/[\s()-]/g, "").replace(/^\+/, "");
  const text = $("new-chat-text").value;
  $("new-chat-error").textContent = "";
  if (!/^\d{8,15}$/.test(to)) { $("new-chat-error").textContent = "Type the number with its country code, digits only (8 to 15)."; return; }
  try {
    const m = await sendMessage(to, text);
    $("new-chat-dialog").close();
    $("new-chat-form").reset();
    await refreshConversations();
    onMessage(m);
    selectConversation(m.conversation_id);
  } catch (err) { $("new-chat-error").textContent = err.message; }
}
async function demoInbound(ev) {
  ev.preventDefault();
  $("demo-inbound-error").textContent = "";
  try {
    await api("POST", "/api/demo/inbound", { from: $("demo-from").value, text: $("demo-text").value, push_name: $("demo-name").value || null });
    $("demo-inbound").close();
  } catch (err) { $("demo-inbound-error").textContent = err.message; }
}

async function loadSettings() {
  try {
    const s = await api("GET", "/api/whatsapp/settings");
    $("auto-reply").checked = s.auto_reply;
    if (document.activeElement !== $("auto-reply-prompt")) $("auto-reply-prompt").value = s.auto_reply_prompt || "";
  } catch { /* no instance yet: nothing to show */ }
}
async function saveSettings() {
  const status = $("settings-status");
  status.textContent = "Saving…";
  try {
    const body = await api("PATCH", "/api/whatsapp/settings", { auto_reply: $("auto-reply").checked, auto_reply_prompt: $("auto-reply-prompt").value });
    status.textContent = body.instance.auto_reply ? "Saved: automatic replies are on." : "Saved: automatic replies are off.";
  } catch (err) {
    status.textContent = err.status === 404 ? "Connect WhatsApp first, then set up automatic replies." : err.message;
  }
}
async function exportConversations() {
  const button = $("export");
  button.disabled = true; button.textContent = "Preparing…";
  try {
    let res;
    try { res = await fetch("/api/whatsapp/export", { headers: { Authorization: "Bearer " + state.token } }); }
    catch { throw new ApiFailure(0, "offline", "The service cannot be reached right now."); }
    if (res.status === 401) { signOut("Your session has expired. Sign in again."); return; }
    if (!res.ok) {
      const data = await res.json().catch(() => null);
      throw new ApiFailure(res.status, "error", res.status === 404 ? "There is nothing to export yet: connect WhatsApp first." : ((data && data.error && data.error.message) || `The service answered ${res.status}.`));
    }
    const blob = await res.blob();
    const tail = (await blob.slice(Math.max(0, blob.size - 400)).text()).trim().split("\n").pop();
    let end = null; try { end = JSON.parse(tail); } catch { /* an incomplete file */ }
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: `auzap-export-${new Date().toISOString().slice(0, 10)}.ndjson` });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    if (end && end.type === "end") {
      const n = end.counts || {};
      toast({ level: "success", title: "Export downloaded", message: `${n.conversations || 0} conversations, ${n.messages || 0} messages, ${n.contacts || 0} contacts.` });
    } else {
      toast({ level: "warning", title: "Export incomplete", message: "The download stopped early; try again." });
    }
  } catch (err) { failToast(err, "Export failed"); }
  finally { button.disabled = false; button.textContent = "Export my conversations"; }
}

function autosize() {
  const box = $("compose");
  box.style.height = "auto";
  box.style.height = Math.min(box.scrollHeight + 2, 128) + "px";
}

/* ---------- wiring ---------- */

function wire() {
  $("demo-login").addEventListener("click", async () => {
    $("signin-error").textContent = "";
    try {
      const res = await fetch("/api/demo/login", { method: "POST" });
      if (!res.ok) throw new Error(`The demo login answered ${res.status}.`);
      signIn((await res.json()).token);
    } catch (err) { $("signin-error").textContent = err.message; }
  });
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    try { signIn(tokenFromPaste($("token-input").value)); }
    catch (err) { $("signin-error").textContent = err.message; }
  });
  $("signout").addEventListener("click", () => signOut());
  $("live-retry").addEventListener("click", () => { $("live-retry").hidden = true; socket.retryNow(); });
  $("connect").addEventListener("click", connectWhatsApp);
  $("logout").addEventListener("click", () => $("logout-dialog").showModal());
  $("logout-form").addEventListener("submit", logoutWhatsApp);
  $("demo-scan").addEventListener("click", demoScan);
  $("composer").addEventListener("submit", sendFromComposer);
  $("compose").addEventListener("input", autosize);
  $("compose").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); $("composer").requestSubmit(); }
  });
  $("back").addEventListener("click", () => {
    const id = state.selected; state.selected = null; render(); renderConversations();
    const item = document.querySelector(`.conv[data-id="${CSS.escape(id || "")}"]`); if (item) item.focus();
  });
  $("more-conversations").addEventListener("click", moreConversations);
  $("open-settings").addEventListener("click", () => { $("settings-status").textContent = ""; loadSettings(); $("settings").showModal(); });
  $("settings-save").addEventListener("click", saveSettings);
  $("settings-form").addEventListener("submit", (ev) => { ev.preventDefault(); saveSettings(); });
  $("export").addEventListener("click", exportConversations);
  $("new-chat").addEventListener("click", () => { $("new-chat-error").textContent = ""; $("new-chat-dialog").showModal(); });
  $("new-chat-form").addEventListener("submit", sendNewChat);
  $("demo-inbound-open").addEventListener("click", () => { $("demo-inbound-error").textContent = ""; $("demo-inbound").showModal(); });
  $("demo-inbound-form").addEventListener("submit", demoInbound);
  for (const b of document.querySelectorAll("dialog [data-close]")) b.addEventListener("click", () => b.closest("dialog").close());
  setInterval(tickQr, 1000);
  // A tab woken up from sleep or back online does not wait for its backoff.
  window.addEventListener("online", () => socket.retryNow());
}

wire();
const saved = sessionStorage.getItem(TOKEN_KEY);
const savedClaims = saved && decodeClaims(saved);
if (saved && savedClaims && !(typeof savedClaims.exp === "number" && savedClaims.exp * 1000 < Date.now())) signIn(saved);
else { sessionStorage.removeItem(TOKEN_KEY); showSignin(); }
