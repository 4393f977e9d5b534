/* auzap user page: the page's state and everything that draws it (panels, list, messages,
   toasts).  What clicks do is app.js's: it fills `actions`. */

import { $, avatarColor, dayOf, el, formatPhone, initials, jidPhone, listTime, receipt, timeOf } from "./util.js";

const SEEN_KEY = "auzap-seen";
const QR_LIFETIME_S = 45;          // Evolution's qrTimeout: each QR lives about 45 s
const STATUS_TEXT = { disconnected: "Not connected", connecting: "Connecting…", waiting_qr: "Waiting for scan",
  open: "Connected", needs_attention: "Needs attention", none: "Not connected" };

export const DEMO = document.documentElement.dataset.demo === "true";

export const state = {
  token: null, claims: null,
  instance: null,                 // InstanceView, or null before the first connect
  conversations: [], nextConversations: null,
  selected: null,                 // conversation id
  messages: new Map(),            // id -> MessageView of the selected conversation
  nextMessages: null,
  typing: new Map(),              // remote_jid -> until (ms)
  seen: loadSeen(),               // conversation id -> id of the last message seen here
  qrAt: 0,                        // when the current QR arrived (ms)
};

/* Filled by app.js: reconnect() -> bool, select(id), loadOlder(). */
export const actions = {};

function loadSeen() { try { return JSON.parse(sessionStorage.getItem(SEEN_KEY) || "{}"); } catch { return {}; } }
export function saveSeen() { sessionStorage.setItem(SEEN_KEY, JSON.stringify(state.seen)); }

/* ---------- toasts ---------- */

const TOAST_ICON = { info: "i", success: "✓", warning: "!", error: "!" };
export function toast(n) {
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
      const ok = await actions.reconnect();
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
export function dismiss(node) { node.remove(); }

export function conversationName(c) {
  return c.title || (c.contact && c.contact.push_name) || formatPhone(jidPhone(c.remote_jid)) || c.remote_jid;
}
export function unreadOf(c) {
  return c.id === state.selected ? 0 : (c.unread_count || 0);
}
/* The server's counts, less what was read in this tab: a conversation whose last message is the
   one last seen here has nothing new (the API has no "mark as read" yet). */
export function applySeen(conversations) {
  for (const c of conversations) {
    if (c.last_message && state.seen[c.id] === c.last_message.id) c.unread_count = 0;
  }
}
export function isTyping(jid) { const until = state.typing.get(jid); return until && until > Date.now(); }

export function renderConversations() {
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
    button.addEventListener("click", () => actions.select(c.id));
    list.append(el("li", {}, button));
  }
  $("conversations-empty").hidden = state.conversations.length > 0;
  $("more-conversations").hidden = !state.nextConversations;
}


/* ---------- rendering ---------- */

export function render() {
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

export function renderConnect(view) {
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
export function tickQr() {
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

export function renderChatHead() {
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

export function renderMessages(scrollToEnd) {
  const box = $("messages");
  const nearEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const list = [...state.messages.values()].sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp) || a._order - b._order);
  const c = state.conversations.find((x) => x.id === state.selected);
  const nodes = [];
  if (state.nextMessages) {
    nodes.push(el("button", { class: "btn small older", type: "button", onclick: () => actions.loadOlder() }, "Load older messages"));
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

