/* auzap user page: sign in, connect WhatsApp, conversations and messages, live over /ws.
   Plain JavaScript modules, no build step.  The page only ever holds the user's own token
   (in sessionStorage, gone with the tab). */

import { createSocket } from "./live.js";
import { $, STATUS_RANK, decodeClaims, el, tokenFromPaste } from "./util.js";
import {
  DEMO, actions, applySeen, dismiss, render, renderChatHead, renderConversations, renderMessages, saveSeen,
  state, tickQr, toast,
} from "./view.js";

const TOKEN_KEY = "auzap-token";
const TYPING_FOR_MS = 25000;       // WhatsApp repeats "composing" while the person types

const socket = createSocket({
  token: () => state.token,
  onFrame: (frame) => onFrame(frame),
  onSignedOut: (message) => signOut(message),
});

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


/* ---------- frames ---------- */

function onFrame(frame) {
  const data = frame.data;
  // A user with several instances (AUZAP_MAX_INSTANCES_PER_USER above 1) sees their primary one
  // here: the frames of the others name another instance and are not this page's.
  const named = data && typeof data === "object" && data.instance_name;
  if (frame.type !== "snapshot" && named && state.instance &&
      state.instance.instance_name && named !== state.instance.instance_name) return;
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
      applySeen(page.conversations);
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
    applySeen(page.conversations);
    const known = new Set(state.conversations.map((c) => c.id));
    state.conversations.push(...page.conversations.filter((c) => !known.has(c.id)));
    state.nextConversations = page.next;
    renderConversations();
  } catch (err) { failToast(err, "Could not load more conversations"); }
}

async function selectConversation(id) {
  state.selected = id;
  const c = state.conversations.find((x) => x.id === id);
  // Seen here: what arrives later counts from zero.
  if (c) { if (c.last_message) state.seen[id] = c.last_message.id; c.unread_count = 0; saveSeen(); }
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
    for (const m of page.messages) mergeMessage(m, true);
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
/* Messages of the same second are shown in the server's order: a page (newest first) numbers
   its messages downwards, live ones upwards; a message keeps the number it first got. */
let newerOrder = 0;
let olderOrder = 0;
function mergeMessage(m, fromPage = false) {
  const old = state.messages.get(m.id);
  const order = old ? old._order : fromPage ? --olderOrder : ++newerOrder;
  state.messages.set(m.id, Object.assign({}, keepStatus(old, m), { _order: order }));
}

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
    if (c && c.last_message && c.last_message.id === m.id) { state.seen[m.conversation_id] = m.id; saveSeen(); }
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
  const old = state.messages.get(m.id);
  if (old) { state.messages.set(m.id, Object.assign({}, m, { _order: old._order })); renderMessages(false); }
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

actions.reconnect = connectWhatsApp;
actions.select = selectConversation;
actions.loadOlder = () => loadMessages(state.selected, state.nextMessages);

wire();
const saved = sessionStorage.getItem(TOKEN_KEY);
const savedClaims = saved && decodeClaims(saved);
if (saved && savedClaims && !(typeof savedClaims.exp === "number" && savedClaims.exp * 1000 < Date.now())) signIn(saved);
else { sessionStorage.removeItem(TOKEN_KEY); showSignin(); }
