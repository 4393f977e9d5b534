/* auzap user page: small pure helpers (DOM building, formatting, tokens). */

export const STATUS_RANK = { pending: 0, server_ack: 1, delivered: 2, read: 3, played: 4, error: 5, deleted: 6 };
const RECEIPT_TEXT = { pending: "Sending", server_ack: "Sent", delivered: "Delivered", read: "Read", played: "Played", error: "Not sent" };

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs, ...children) {
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
export function icon(path, size) {
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
export function receipt(status) {
  const shape = { pending: "clock", server_ack: "check", error: "alert" }[status] || "checks";
  const span = el("span", { class: "receipt", "data-status": status, role: "img", "aria-label": RECEIPT_TEXT[status] || status, title: RECEIPT_TEXT[status] || status });
  span.append(icon(ICONS[shape], 16));
  return span;
}
export function initials(name) {
  const words = String(name || "?").replace(/[^\p{L}\p{N} ]/gu, " ").trim().split(/\s+/);
  return ((words[0] || "?")[0] + (words.length > 1 ? words[words.length - 1][0] : "")).toUpperCase();
}
export function avatarColor(key) {
  let h = 0; for (const ch of String(key)) h = (h * 31 + ch.codePointAt(0)) % 360;
  return `hsl(${h} 42% 46%)`;
}
export function formatPhone(digits) {
  if (!digits) return "";
  const d = String(digits);
  if (d.startsWith("55") && d.length >= 12) return `+55 ${d.slice(2, 4)} ${d.slice(4, d.length - 4)}-${d.slice(-4)}`;
  return "+" + d;
}
export function jidPhone(jid) { const user = String(jid || "").split("@")[0]; return /^\d{6,}$/.test(user) ? user : null; }
export function timeOf(iso) {
  const d = new Date(iso); if (isNaN(d)) return "";
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
export function dayOf(iso) {
  const d = new Date(iso); if (isNaN(d)) return "";
  const today = new Date(); const yesterday = new Date(Date.now() - 864e5);
  if (d.toDateString() === today.toDateString()) return "Today";
  if (d.toDateString() === yesterday.toDateString()) return "Yesterday";
  return d.toLocaleDateString([], { day: "numeric", month: "short", year: d.getFullYear() === today.getFullYear() ? undefined : "numeric" });
}
export function listTime(iso) {
  const d = new Date(iso); if (isNaN(d)) return "";
  return d.toDateString() === new Date().toDateString() ? timeOf(iso) : dayOf(iso);
}

/* ---------- tokens ---------- */

export function decodeClaims(jwt) {
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
export function tokenFromPaste(text) {
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
