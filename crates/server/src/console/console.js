// chatd console: a page for trying chatd in a browser, through its public API only.
//
// Plain script, no framework, no build step. Three rules hold throughout:
// - Text from the server is shown with textContent / text nodes, never parsed as HTML.
// - The admin key and the token live in `state` only: sent in an Authorization header or
//   in the path of a fetch / EventSource, never put in the address bar, history, storage,
//   cookies or the log.
// - Each message is one element, keyed by its number, so a message delivered twice (the
//   first page and the stream, a send and the stream, a resumed stream) shows once.
"use strict";

const state = {
  adminKey: "",
  token: "",
  appView: 0, // bumped when another application opens: answers for the previous one are dropped
  chatView: 0, // the same for chats
  chat: null, // the open chat's number
  appsNext: null, // the Link rel="next" targets of the lists shown
  chatsNext: null,
  olderNext: null,
  messages: new Map(), // message number → its <li>
  streamAfter: 0, // the newest message number shown from the first page or the stream
  source: null, // the open EventSource
  retryTimer: 0,
  countTimer: 0,
  pending: null, // { path, body, key }: a send not yet confirmed, so a retry reuses its Idempotency-Key
};

const el = (id) => document.getElementById(id);

/** An error to show the user: the API's own `message` when it sent one. */
class ApiError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

/** One API call: JSON in and out; `next` is the answer's Link rel="next" target, if any. */
async function api(path, { method = "GET", json, admin = false, headers = {} } = {}) {
  const h = new Headers(headers);
  h.set("Accept", "application/json");
  if (admin && state.adminKey) h.set("Authorization", `Bearer ${state.adminKey}`);
  const init = { method, headers: h, cache: "no-store", credentials: "omit", redirect: "error" };
  if (json !== undefined) {
    h.set("Content-Type", "application/json");
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError("chatd could not be reached.");
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const message = data && typeof data.message === "string" ? data.message : `chatd answered ${response.status}.`;
    throw new ApiError(message, response.status);
  }
  return { data, next: linkTarget(response.headers.get("Link"), "next") };
}

/**
 * The target of the `rel` link in a Link header, as a path of this origin; null when there
 * is none, or when it points elsewhere (a key or token is never sent to another origin).
 */
function linkTarget(header, rel) {
  if (!header) return null;
  for (const part of header.split(/,(?=\s*<)/)) {
    const link = /^\s*<([^>]*)>(.*)$/s.exec(part);
    const rels = link && /;\s*rel\s*=\s*(?:"([^"]*)"|([^\s;,]+))/i.exec(link[2]);
    if (!rels || !(rels[1] ?? rels[2]).toLowerCase().split(/\s+/).includes(rel)) continue;
    const url = new URL(link[1], location.href);
    return url.origin === location.origin ? url.pathname + url.search : null;
  }
  return null;
}

const appPath = (token = state.token) => `/applications/${encodeURIComponent(token)}`;
const chatPath = () => `${appPath()}/chats/${state.chat}`;
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function showError(error) {
  const box = el("error");
  box.textContent = error instanceof ApiError ? error.message : "Something went wrong in the page.";
  box.hidden = false;
}

function clearError() {
  el("error").hidden = true;
  el("error").textContent = "";
}

/** An event handler that runs `handler`, showing what fails; forms are never submitted. */
function act(handler) {
  return async (event) => {
    if (event && event.type === "submit") event.preventDefault();
    clearError();
    try {
      await handler(event);
    } catch (error) {
      showError(error);
    }
  };
}

/** A button in a pick list: a name and a count. */
function pick(name, count, onClick) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  const label = document.createElement("span");
  label.className = "name";
  label.textContent = name;
  const side = document.createElement("span");
  side.className = "count";
  side.textContent = count;
  button.append(label, side);
  button.addEventListener("click", act(onClick));
  item.append(button);
  return { item, button, side };
}

// Applications (with the admin key) -------------------------------------------------------

async function listApps(path) {
  const { data, next } = await api(path, { admin: true });
  for (const app of data) {
    el("apps").append(pick(app.name, plural(app.chats_count, "chat"), () => openApplication(app.access_token)).item);
  }
  if (data.length === 0 && !el("apps").firstChild) throw new ApiError("There is no application yet.");
  state.appsNext = next;
  el("more-apps").hidden = !next;
}

// Chats -------------------------------------------------------------------------------------

async function openApplication(token) {
  closeChat();
  const view = ++state.appView;
  const { data } = await api(appPath(token));
  if (view !== state.appView) return;
  state.token = token;
  el("app-name").textContent = data.name;
  el("chats-section").hidden = false;
  el("chats").replaceChildren();
  await listChats(`${appPath()}/chats?limit=100`, view);
}

async function listChats(path, view) {
  const { data, next } = await api(path);
  if (view !== state.appView) return;
  for (const chat of data) {
    const { item, button } = pick(`Chat ${chat.number}`, plural(chat.messages_count, "message"), () =>
      openChat(chat.number),
    );
    button.dataset.chat = String(chat.number);
    button.setAttribute("aria-current", String(chat.number === state.chat));
    el("chats").append(item);
  }
  state.chatsNext = next;
  el("more-chats").hidden = !next;
}

function reloadChats() {
  el("chats").replaceChildren();
  return listChats(`${appPath()}/chats?limit=100`, state.appView);
}

/** Shows a chat's count as the server has it now. */
function showCount(chat) {
  const button = el("chats").querySelector(`button[data-chat="${chat.number}"]`);
  if (button) button.querySelector(".count").textContent = plural(chat.messages_count, "message");
}

// Messages ----------------------------------------------------------------------------------

function closeChat() {
  state.chatView++;
  if (state.source) state.source.close();
  state.source = null;
  clearTimeout(state.retryTimer);
  clearTimeout(state.countTimer);
  state.chat = null;
  state.messages.clear();
  state.olderNext = null;
  state.pending = null;
  el("messages").replaceChildren();
  el("results").replaceChildren();
  el("search-summary").textContent = "";
  el("chat").hidden = true;
  el("no-chat").hidden = false;
  for (const button of el("chats").querySelectorAll("button[data-chat]")) button.setAttribute("aria-current", "false");
}

async function openChat(number) {
  closeChat();
  const view = state.chatView;
  state.chat = number;
  for (const button of el("chats").querySelectorAll("button[data-chat]")) {
    button.setAttribute("aria-current", String(button.dataset.chat === String(number)));
  }
  el("chat-title").textContent = `Chat ${number}`;
  el("chat").hidden = false;
  el("no-chat").hidden = true;
  // The newest page first; its Link rel="next" leads to older ones.
  const { data, next } = await api(`${chatPath()}/messages?order=desc&limit=50`);
  if (view !== state.chatView) return;
  for (const message of data) show(message);
  state.olderNext = next;
  el("older").hidden = !next;
  state.streamAfter = data.reduce((newest, m) => Math.max(newest, m.number), 0);
  scrollToEnd();
  openStream(view);
}

const isMessage = (m) => m !== null && typeof m === "object" && Number.isSafeInteger(m.number) && typeof m.body === "string";

function when(timestamp) {
  const date = new Date(timestamp);
  return Number.isNaN(date.getTime()) ? String(timestamp) : date.toLocaleString();
}

/** Shows a message, or updates the one with its number; true when it was not shown yet. */
function show(message) {
  if (!isMessage(message)) return false;
  let item = state.messages.get(message.number);
  const added = !item;
  if (added) {
    item = document.createElement("li");
    item.dataset.number = String(message.number);
    const meta = document.createElement("span");
    meta.className = "meta";
    const body = document.createElement("span");
    body.className = "body";
    item.append(meta, body);
    state.messages.set(message.number, item);
    // In number order, wherever it arrives from.
    let before = el("messages").lastElementChild;
    while (before && Number(before.dataset.number) > message.number) before = before.previousElementSibling;
    if (before) before.after(item);
    else el("messages").prepend(item);
  }
  const edited = message.updated_at !== message.created_at ? " · edited" : "";
  item.querySelector(".meta").textContent = `#${message.number} · ${when(message.created_at)}${edited}`;
  item.querySelector(".body").textContent = message.body;
  return added;
}

const atEnd = () => {
  const log = el("log");
  return log.scrollHeight - log.scrollTop - log.clientHeight < 8;
};

const scrollToEnd = () => {
  el("log").scrollTop = el("log").scrollHeight;
};

function setLive(text, on) {
  el("live").textContent = text;
  el("live").classList.toggle("on", on);
}

function parse(data) {
  try {
    return JSON.parse(data);
  } catch {
    return null;
  }
}

/**
 * Follows the chat live from the newest message shown. The browser reconnects by itself
 * after a dropped connection or an `end` event, sending Last-Event-ID, and chatd resends
 * what was missed. When the browser gives up (an answer that is not a stream, such as a 503
 * while chatd restarts), a new stream starts after the newest message shown.
 */
function openStream(view) {
  const source = new EventSource(`${chatPath()}/messages/stream?after=${state.streamAfter}`);
  state.source = source;
  setLive("connecting…", false);
  source.addEventListener("open", () => setLive("live", true));
  source.addEventListener("message", (event) => {
    const message = parse(event.data);
    if (view !== state.chatView || !isMessage(message)) return;
    const stick = atEnd();
    if (show(message)) refreshCount(view);
    state.streamAfter = Math.max(state.streamAfter, message.number);
    if (stick) scrollToEnd();
  });
  source.addEventListener("edit", (event) => {
    const message = parse(event.data);
    if (view === state.chatView && isMessage(message) && state.messages.has(message.number)) show(message);
  });
  source.addEventListener("end", () => setLive("reconnecting…", false));
  source.addEventListener("error", () => {
    if (state.source !== source) return;
    setLive("reconnecting…", false);
    if (source.readyState === EventSource.CLOSED) {
      state.retryTimer = setTimeout(() => {
        if (view === state.chatView) openStream(view);
      }, 2000);
    }
  });
}

/** The open chat's count, read again shortly after new messages (one read for a burst). */
function refreshCount(view) {
  clearTimeout(state.countTimer);
  state.countTimer = setTimeout(async () => {
    if (view !== state.chatView) return;
    try {
      showCount((await api(chatPath())).data);
    } catch {
      // The count stays as it was until the next message or Refresh.
    }
  }, 500);
}

function newKey() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function send() {
  const text = el("body").value;
  if (!text.trim()) throw new ApiError("Write a message first.");
  const view = state.chatView;
  const path = `${chatPath()}/messages`;
  // A retry of the same text in the same chat (after a timeout, a 503) cannot store it twice.
  if (!state.pending || state.pending.path !== path || state.pending.body !== text) {
    state.pending = { path, body: text, key: newKey() };
  }
  const button = el("send");
  button.disabled = true;
  try {
    const created = await api(path, { method: "POST", json: { body: text }, headers: { "Idempotency-Key": state.pending.key } });
    if (view !== state.chatView) return;
    state.pending = null;
    el("body").value = "";
    // The stream brings it too; reading it shows it even while the stream reconnects.
    const { data } = await api(`${path}/${created.data.number}`);
    if (view === state.chatView && show(data)) {
      refreshCount(view);
      scrollToEnd();
    }
  } finally {
    button.disabled = false;
  }
}

// Search ------------------------------------------------------------------------------------

/** The keyword's terms, split as chatd splits them: on white space, "quoted parts" whole. */
function searchTerms(keyword) {
  return Array.from(keyword.matchAll(/"([^"]*)"|(\S+)/g), (m) => m[1] ?? m[2]).filter((t) => t.trim());
}

/**
 * `text` folded about as chatd normalises for search (compatibility decomposition, lower
 * case, no combining marks or invisible format characters, final sigma as sigma), with the
 * span of `text` each folded code unit came from, so that matches map back to the original.
 */
function fold(text) {
  let folded = "";
  const from = [];
  const to = [];
  let at = 0;
  for (const ch of text) {
    const f = ch
      .toLowerCase()
      .normalize("NFKD")
      .replace(/[\p{M}\p{Cf}\u0640]/gu, "")
      .replace(/ς/g, "σ");
    for (let k = 0; k < f.length; k++) {
      from.push(at);
      to.push(at + ch.length);
    }
    folded += f;
    at += ch.length;
  }
  return { folded, from, to };
}

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

/** Where the terms occur in `text`: sorted, merged [start, end) ranges. */
function matchRanges(text, terms) {
  const { folded, from, to } = fold(text);
  const ranges = [];
  for (const term of terms) {
    const parts = fold(term).folded.split(/\s+/).filter(Boolean);
    if (parts.length === 0) continue;
    for (const m of folded.matchAll(new RegExp(parts.map(escapeRegExp).join("\\s+"), "gu"))) {
      if (m[0].length > 0) ranges.push([from[m.index], to[m.index + m[0].length - 1]]);
    }
  }
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const merged = [];
  for (const [start, end] of ranges) {
    const last = merged[merged.length - 1];
    if (last && start <= last[1]) last[1] = Math.max(last[1], end);
    else merged.push([start, end]);
  }
  return merged;
}

/** `text` as text nodes, with each match of the terms in a <mark>. */
function marked(text, terms) {
  const fragment = document.createDocumentFragment();
  let at = 0;
  for (const [start, end] of matchRanges(text, terms)) {
    fragment.append(document.createTextNode(text.slice(at, start)));
    const mark = document.createElement("mark");
    mark.textContent = text.slice(start, end);
    fragment.append(mark);
    at = end;
  }
  fragment.append(document.createTextNode(text.slice(at)));
  return fragment;
}

async function search() {
  const keyword = el("keyword").value;
  const view = state.chatView;
  const { data } = await api(`${chatPath()}/messages/search?keyword=${encodeURIComponent(keyword)}`);
  if (view !== state.chatView) return;
  const terms = searchTerms(keyword);
  const items = data.filter(isMessage).map((message) => {
    const item = document.createElement("li");
    item.dataset.number = String(message.number);
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = `#${message.number} · ${when(message.created_at)}`;
    const body = document.createElement("span");
    body.className = "body";
    body.append(marked(message.body, terms));
    item.append(meta, body);
    return item;
  });
  el("results").replaceChildren(...items);
  el("search-summary").textContent =
    items.length === 0 ? "No message matches." : `${plural(items.length, "message")} match, best first.`;
}

// Wiring ------------------------------------------------------------------------------------

el("token-form").addEventListener(
  "submit",
  act(async () => {
    const token = el("token").value.trim();
    if (!token) throw new ApiError("Enter an application token.");
    await openApplication(token);
  }),
);
el("admin-form").addEventListener(
  "submit",
  act(async () => {
    state.adminKey = el("admin-key").value;
    el("apps").replaceChildren();
    el("more-apps").hidden = true;
    await listApps("/applications?limit=100");
  }),
);
el("more-apps").addEventListener("click", act(() => listApps(state.appsNext)));
el("more-chats").addEventListener("click", act(() => listChats(state.chatsNext, state.appView)));
el("refresh-chats").addEventListener("click", act(reloadChats));
el("new-chat").addEventListener(
  "click",
  act(async () => {
    const { data } = await api(`${appPath()}/chats`, { method: "POST" });
    await reloadChats();
    await openChat(data.number);
  }),
);
el("older").addEventListener(
  "click",
  act(async () => {
    const view = state.chatView;
    const { data, next } = await api(state.olderNext);
    if (view !== state.chatView) return;
    const log = el("log");
    const fromEnd = log.scrollHeight - log.scrollTop;
    for (const message of data) show(message);
    log.scrollTop = log.scrollHeight - fromEnd;
    state.olderNext = next;
    el("older").hidden = !next;
  }),
);
el("send-form").addEventListener("submit", act(send));
el("body").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    el("send-form").requestSubmit();
  }
});
el("search-form").addEventListener("submit", act(search));
