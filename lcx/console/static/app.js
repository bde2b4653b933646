// The lcx agent and supervisor console. It speaks only the public contract: the agent
// websocket (API.md section 5) and the management API (section 6).
import { Api } from "./api.js";
import { initialLanguage, language, setLanguage, t } from "./i18n.js";
import { AgentSocket } from "./socket.js";
import { Notifier } from "./notify.js";
import { cannedMatches, claimsOf, contiguousSeq, formatWait, insertBySeq } from "./util.js";

const TOKEN_KEY = "lcx.token";
const TYPING_IDLE_MS = 4000;
const TYPING_REPEAT_MS = 3000;
const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  api: null,
  socket: null,
  me: null,
  routing: "broadcast",
  queue: new Map(),
  gone: new Set(),
  convs: new Map(),
  openId: null,
  canned: [],
  cannedOptions: [],
  cannedIndex: -1,
  overview: null,
  activeAll: [],
  history: { cursor: null },
  hours: null,
  typingSentAt: 0,
  typingTimer: null,
};
const notifier = new Notifier();

// ---- small DOM helpers ----------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "text") element.textContent = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) element.append(child);
  }
  return element;
}

function showNotice(text) {
  const notice = $("notice");
  notice.textContent = text;
  notice.hidden = false;
  clearTimeout(showNotice.timer);
  showNotice.timer = setTimeout(() => { notice.hidden = true; }, 8000);
}

function failed(error) {
  showNotice(t("error", { message: error.message || String(error) }));
}

function subscriberName(subscriber, fallback) {
  return (subscriber && subscriber.name) || fallback || t("anonymous");
}

function timeOf(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" :
    date.toLocaleTimeString(language(), { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function dateTimeOf(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString(language());
}

// ---- sign-in --------------------------------------------------------------------------

function start() {
  setLanguage(initialLanguage());
  $("language").value = language();
  $("language").addEventListener("change", (event) => {
    setLanguage(event.target.value, true);
    renderAll();
  });
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("token").value.trim());
  });
  $("sign-out").addEventListener("click", signOut);
  $("enable-sound").addEventListener("click", async () => {
    await notifier.enable();
    $("enable-sound").textContent = t("soundOn");
    $("enable-sound").setAttribute("aria-pressed", "true");
  });
  $("agent-status").addEventListener("change", (event) => {
    state.socket.event("AGENT_STATUS", { status: event.target.value }).catch(failed);
  });
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => showView(tab.dataset.view));
  }
  wireComposer();
  wireManage();
  $("history-more").addEventListener("click", () => loadHistory(false).catch(failed));
  document.addEventListener("keydown", globalKeys);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) markRead();
  });
  setInterval(tick, 1000);

  const params = new URLSearchParams(location.search);
  const fromUrl = params.get("token");
  if (fromUrl) {
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
  }
  const token = fromUrl || sessionStorage.getItem(TOKEN_KEY);
  if (token) signIn(token);
}

function signIn(token) {
  const claims = claimsOf(token);
  if (!claims || !claims.org) {
    $("sign-in-error").textContent = t("badToken", { reason: "malformed" });
    return;
  }
  const scopes = String(claims.scope || "").split(/[\s,]+/);
  state.token = token;
  state.me = {
    id: claims.sub, name: claims.name || claims.sub, org: claims.org,
    groups: claims.groups || [], supervisor: scopes.includes("supervisor"),
  };
  sessionStorage.setItem(TOKEN_KEY, token);
  state.api = new Api(token);
  state.socket = new AgentSocket(token, { onFrame: frameReceived, onState: connectionChanged });
  $("sign-in").hidden = true;
  $("workspace").hidden = false;
  $("session-controls").hidden = false;
  for (const element of document.querySelectorAll(".supervisor-only")) {
    element.hidden = !state.me.supervisor;
  }
  state.socket.connect();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  if (state.socket) state.socket.close();
  location.reload();
}

function connectionChanged(name, data) {
  const connection = $("connection");
  connection.dataset.state = name;
  const banner = $("banner");
  if (name === "connected") {
    connection.textContent = t("connected");
    banner.hidden = true;
    resync().catch(failed);
  } else if (name === "reconnecting") {
    connection.textContent = t("reconnecting");
    banner.textContent = t("reconnectingBanner");
    banner.hidden = false;
  } else if (name === "connecting") {
    connection.textContent = t("connecting");
  } else if (name === "unauthorized") {
    sessionStorage.removeItem(TOKEN_KEY);
    connection.textContent = t("signedOut");
    $("workspace").hidden = true;
    $("session-controls").hidden = true;
    $("sign-in").hidden = false;
    $("sign-in-error").textContent = t("badToken", { reason: data.reason || "unauthorized" });
  }
}

// ---- loading state over HTTP (after every connection) ---------------------------------

const org = () => encodeURIComponent(state.me.org);

async function resync() {
  const settings = await state.api.get(`/organizations/${org()}/livechat-settings`);
  state.routing = settings.routing;
  await Promise.all([loadQueue(), loadConversations(), loadCanned()]);
  const resume = {};
  for (const conv of state.convs.values()) {
    if (conv.status === "active") resume[conv.id] = contiguousSeq(conv.messages);
  }
  if (Object.keys(resume).length) {
    await state.socket.event("RESUME", { conversations: resume });
  }
  if (state.me.supervisor) await loadActiveAll();
  renderAll();
}

async function loadQueue() {
  // Pushes may arrive while the listing is on its way: keep what was added meanwhile and
  // never bring back a request that was taken, cancelled or missed since.
  const before = new Set(state.queue.keys());
  const page = await state.api.get(
    `/organizations/${org()}/livechat-requests?status=pending&limit=200`);
  const seen = new Set();
  for (const item of page.items) {
    seen.add(item.id);
    if (state.gone.has(item.id)) continue;
    const known = state.queue.get(item.id);
    state.queue.set(item.id, {
      requestId: item.id, subscriber: item.subscriber, userGroupId: item.userGroupId,
      queuedAt: item.queuedAt, createdAt: item.createdAt,
      context: known ? known.context : null,
    });
  }
  for (const id of before) {
    if (!seen.has(id)) state.queue.delete(id);
  }
}

/** Forget a waiting request for good (taken, cancelled, missed). */
function requestGone(requestId) {
  state.queue.delete(requestId);
  state.gone.add(requestId);
}

function newConversation(data) {
  return {
    id: data.id || data.conversationId, requestId: data.requestId,
    subscriber: data.subscriber || {}, context: data.context || {},
    userGroupId: data.userGroupId, tenantId: data.tenantId, status: data.status || "active",
    messages: new Map(), unread: 0, readOnly: false, flagged: false, typing: null,
    participants: data.participants || [], readSeq: 0, reads: new Map(), seenAt: null,
  };
}

function addConversation(data, messages = []) {
  const id = data.id || data.conversationId;
  let conv = state.convs.get(id);
  if (!conv) {
    conv = newConversation(data);
    state.convs.set(id, conv);
  } else {
    Object.assign(conv, {
      subscriber: data.subscriber || conv.subscriber, context: data.context || conv.context,
      userGroupId: data.userGroupId || conv.userGroupId, status: data.status || conv.status,
    });
    conv.readOnly = false;
  }
  for (const message of messages) storeMessage(conv, message);
  return conv;
}

async function loadConversations() {
  const page = await state.api.get(
    `/agent/organizations/${org()}/livechat-conversations?status=active&limit=200`);
  const mine = page.items.filter((item) =>
    item.participants.some((p) => p.id === state.me.id && !p.leftAt));
  await Promise.all(mine.map(async (item) => {
    const fresh = !state.convs.has(item.id);
    const conv = addConversation(item);
    conv.flagged = Boolean(item.flags && item.flags.flagged);
    if (fresh) {
      await loadTranscript(conv);
      restoreReadMarkers(conv, item.flags);
    }
  }));
}

/** The read markers kept on the conversation (flags.readMarkers, agent id -> seq): this
 * agent's gives the unread count after a reload, the others' show who read how far. */
function restoreReadMarkers(conv, flags) {
  const markers = (flags && flags.readMarkers) || {};
  for (const [agentId, seq] of Object.entries(markers)) {
    if (agentId === state.me.id) continue;
    const who = conv.participants.find((p) => p.id === agentId);
    conv.reads.set(agentId, { name: (who && who.name) || agentId, seq });
  }
  conv.readSeq = markers[state.me.id] || 0;
  conv.unread = [...conv.messages.values()].filter((m) =>
    m.seq > conv.readSeq && !isMine(m)).length;
}

function isMine(message) {
  return message.author.type === "agent" && message.author.id === state.me.id;
}

async function loadTranscript(conv) {
  const page = await state.api.get(
    `/organizations/${org()}/livechat-messages?conversationId=${encodeURIComponent(conv.id)}`);
  for (const message of page.items) storeMessage(conv, message);
}

async function loadCanned() {
  const page = await state.api.get(`/organizations/${org()}/canned-responses`);
  state.canned = page.items;
  renderCannedManage();
}

async function loadActiveAll() {
  const page = await state.api.get(
    `/agent/organizations/${org()}/livechat-conversations?status=active&limit=200`);
  state.activeAll = page.items;
  renderActiveAll();
}

// ---- frames from the server -----------------------------------------------------------

function frameReceived(frame) {
  if (frame.type === "message") {
    messageReceived(frame.data);
  } else if (frame.type === "event" && frame.event === "NOTIFICATION") {
    notificationReceived(frame.data);
  } else if (frame.type === "event") {
    eventReceived(frame.event, frame.data || {}, frame.ref);
  }
}

function storeMessage(conv, message) {
  if (conv.messages.has(message.seq)) return false;
  conv.messages.set(message.seq, message);
  return true;
}

function messageReceived(message) {
  const conv = state.convs.get(message.conversationId);
  if (!conv || !storeMessage(conv, message)) return;
  const mine = isMine(message);
  const visible = state.openId === conv.id && !document.hidden;
  if (!mine && !visible) {
    conv.unread += 1;
    notifier.alert(t("newMessage", { name: subscriberName(conv.subscriber) }), message.text);
  }
  if (state.openId === conv.id) {
    appendMessage(message);
    if (visible) markRead();
  }
  renderConversations();
}

function notificationReceived(data) {
  switch (data.kind) {
    case "request_created":
      if (!state.queue.has(data.requestId)) {
        state.gone.delete(data.requestId);
        state.queue.set(data.requestId, data);
        notifier.alert(t("newRequest", { name: subscriberName(data.subscriber) }), "");
      } else {
        state.queue.get(data.requestId).context = data.context;
      }
      renderQueue();
      break;
    case "request_accepted":
      if (data.agentId !== state.me.id) requestGone(data.requestId);
      renderQueue();
      break;
    case "request_cancelled":
    case "request_missed":
      requestGone(data.requestId);
      renderQueue();
      break;
    case "request_assigned":
    case "conversation_transferred":
      if (data.subscriber) {
        requestGone(data.requestId);
        const conv = addConversation({ ...data, status: "active" }, data.messages || []);
        notifier.alert(t("newRequest", { name: subscriberName(conv.subscriber) }), "");
        if (!state.openId) openConversation(conv.id);
        renderQueue();
        renderConversations();
      } else {
        dropConversation(data.conversationId);
      }
      break;
    case "conversation_ended":
      conversationEnded(data.conversationId);
      break;
    case "agent_status":
      if (data.status) $("agent-status").value = data.status;
      break;
    case "overview":
      overviewReceived(data);
      break;
    default:
      break;
  }
}

function eventReceived(name, data, ref) {
  const conv = data.conversationId ? state.convs.get(data.conversationId) : null;
  switch (name) {
    case "CONVERSATION_END":
      conversationEnded(data.conversationId);
      break;
    case "CONVERSATION_TYPING":
      if (conv) {
        const who = data.agent ? data.agent.name || data.agent.id : t("authorSubscriber");
        conv.typing = data.typing ? { name: who, until: Date.now() + 10000 } : null;
        renderTyping();
      }
      break;
    case "CONVERSATION_READ":
      if (conv) readReceived(conv, data);
      break;
    case "PARTICIPANT_FLAG":
      if (conv && data.flag === "flagged") conv.flagged = Boolean(data.value);
      renderConversation();
      break;
    case "CONVERSATION_LEAVE":
      if (conv && data.agent && data.agent.id === state.me.id) dropConversation(conv.id);
      break;
    case "AGENT_STATUS":
      if (data.status) $("agent-status").value = data.status;
      break;
    case "ERROR":
      if (ref == null) showNotice(t("error", { message: data.message }));
      break;
    default:
      break;
  }
}

/** Another participant's read marker (an agent: up to `seq`; the subscriber, on channels
 * that report it: everything sent up to `at`). */
function readReceived(conv, data) {
  if (data.subscriber) {
    if (!conv.seenAt || String(data.at) > conv.seenAt) conv.seenAt = String(data.at);
  } else if (data.agent && data.agent.id !== state.me.id) {
    const known = conv.reads.get(data.agent.id);
    if (!known || data.seq > known.seq) {
      conv.reads.set(data.agent.id, { name: data.agent.name || data.agent.id, seq: data.seq });
    }
  } else {
    return;
  }
  if (state.openId === conv.id) renderReceipts(conv);
}

function conversationEnded(id) {
  const conv = state.convs.get(id);
  if (!conv) return;
  conv.status = "ended";
  conv.typing = null;
  renderConversations();
  if (state.openId === id) renderConversation();
}

function dropConversation(id) {
  state.convs.delete(id);
  if (state.openId === id) state.openId = null;
  renderAll();
}

function overviewReceived(data) {
  const before = state.overview;
  state.overview = data;
  renderOverview();
  const total = (o) => (o ? o.queues.reduce((n, q) => n + q.activeConversations, 0) : -1);
  if (total(before) !== total(data)) loadActiveAll().catch(failed);
}

// ---- actions --------------------------------------------------------------------------

async function accept(request) {
  const { requestId } = request;
  try {
    const ack = await state.socket.event("REQUEST_ACCEPT", { requestId });
    requestGone(requestId);
    const conv = addConversation({
      conversationId: ack.conversationId, requestId,
      subscriber: request && request.subscriber, context: request && request.context,
      userGroupId: request && request.userGroupId, status: "active",
    }, ack.messages || []);
    openConversation(conv.id);
    refreshDetail(conv).catch(failed);
  } catch (error) {
    if (error.code === "conflict" || error.code === "not_found") {
      requestGone(requestId);
      showNotice(t("takenByOther", { name: subscriberName(request && request.subscriber) }));
    } else {
      failed(error);
    }
  }
  renderQueue();
  renderConversations();
}

async function refreshDetail(conv) {
  const detail = await state.api.get(
    `/organizations/${org()}/livechat-conversations/${encodeURIComponent(conv.id)}`);
  Object.assign(conv, { subscriber: detail.subscriber, context: detail.context,
    userGroupId: detail.userGroupId, participants: detail.participants });
  conv.flagged = Boolean(detail.flags && detail.flags.flagged);
  await loadTranscript(conv);
  if (state.openId === conv.id) renderConversation();
  renderConversations();
}

function openConversation(id) {
  state.openId = id;
  const conv = state.convs.get(id);
  if (conv) conv.unread = 0;
  closeCanned();
  renderConversations();
  renderConversation();
  markRead();
}

async function viewReadOnly(item) {
  let conv = state.convs.get(item.id);
  if (!conv) {
    conv = addConversation(item);
    conv.readOnly = !item.participants.some((p) => p.id === state.me.id && !p.leftAt);
    await loadTranscript(conv);
  }
  showView("work");
  openConversation(conv.id);
}

async function join(id) {
  await state.socket.event("CONVERSATION_JOIN", { conversationId: id });
  const item = state.activeAll.find((c) => c.id === id) || { id };
  const conv = addConversation(item);
  conv.readOnly = false;
  await loadTranscript(conv);
  showView("work");
  openConversation(id);
  $("message-input").focus();
}

function markRead() {
  const conv = state.convs.get(state.openId);
  if (!conv || conv.readOnly || conv.status !== "active" || document.hidden) return;
  conv.unread = 0;
  const seq = Math.max(0, ...conv.messages.keys());
  if (seq > 0 && seq !== conv.readSeq && state.socket.open) {
    conv.readSeq = seq;
    state.socket.event("CONVERSATION_READ", { conversationId: conv.id, seq }).catch(() => {});
  }
  renderConversations(); // the badge goes with the count (renderConversations sets the title)
}

async function sendMessage() {
  const conv = state.convs.get(state.openId);
  const input = $("message-input");
  const text = input.value.trim();
  if (!conv || !text || conv.readOnly || conv.status !== "active") return;
  const data = { conversationId: conv.id, text, id: crypto.randomUUID() };
  if ($("private-note").checked) data.private = true;
  try {
    await state.socket.ask({ type: "message", data });
    input.value = "";
    $("private-note").checked = false;
    stopTyping(conv);
  } catch (error) {
    failed(error);
  }
}

async function attachFile(file) {
  const conv = state.convs.get(state.openId);
  if (!conv || !file) return;
  showNotice(t("uploading", { name: file.name }));
  try {
    const uploaded = await state.api.upload(file, conv.id);
    await state.socket.ask({ type: "message", data: {
      conversationId: conv.id, id: crypto.randomUUID(),
      attachments: [{ url: uploaded.url, name: uploaded.name,
        contentType: uploaded.contentType, size: uploaded.size }],
    } });
    $("notice").hidden = true;
  } catch (error) {
    failed(error);
  }
}

function sendTyping(conv) {
  const now = Date.now();
  if (now - state.typingSentAt > TYPING_REPEAT_MS) {
    state.typingSentAt = now;
    state.socket.event("CONVERSATION_TYPING", { conversationId: conv.id, typing: true })
      .catch(() => {});
  }
  clearTimeout(state.typingTimer);
  state.typingTimer = setTimeout(() => stopTyping(conv), TYPING_IDLE_MS);
}

function stopTyping(conv) {
  clearTimeout(state.typingTimer);
  if (state.typingSentAt === 0) return;
  state.typingSentAt = 0;
  if (conv.status === "active") {
    state.socket.event("CONVERSATION_TYPING", { conversationId: conv.id, typing: false })
      .catch(() => {});
  }
}

function act(name, data) {
  return state.socket.event(name, data).catch(failed);
}

// ---- composer and canned responses ----------------------------------------------------

function wireComposer() {
  const input = $("message-input");
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    sendMessage();
  });
  input.addEventListener("input", () => {
    updateCanned();
    const conv = state.convs.get(state.openId);
    if (conv && conv.status === "active" && !conv.readOnly && input.value) sendTyping(conv);
  });
  input.addEventListener("keydown", composerKeys);
  input.addEventListener("blur", () => setTimeout(closeCanned, 150));
  $("attach").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", (event) => {
    attachFile(event.target.files[0]);
    event.target.value = "";
  });
  $("end").addEventListener("click", () => {
    if (state.openId) act("CONVERSATION_END", { conversationId: state.openId });
  });
  $("leave").addEventListener("click", () => {
    const id = state.openId;
    if (id) act("CONVERSATION_LEAVE", { conversationId: id }).then(() => dropConversation(id));
  });
  $("flag").addEventListener("click", () => {
    const conv = state.convs.get(state.openId);
    if (!conv) return;
    act("PARTICIPANT_FLAG", { conversationId: conv.id, flag: "flagged", value: !conv.flagged })
      .then(() => { conv.flagged = !conv.flagged; renderConversation(); });
  });
  $("transfer").addEventListener("click", () => {
    $("transfer-form").hidden = false;
    $("transfer-group").focus();
  });
  $("transfer-cancel").addEventListener("click", () => { $("transfer-form").hidden = true; });
  $("transfer-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = state.openId;
    const group = $("transfer-group").value.trim();
    const agent = $("transfer-agent").value.trim();
    const data = agent ? { conversationId: id, toAgentId: agent }
      : { conversationId: id, toUserGroupId: group };
    act("TRANSFER", data).then(() => {
      $("transfer-form").hidden = true;
      dropConversation(id);
    });
  });
  $("join-open").addEventListener("click", () => join(state.openId).catch(failed));
}

function composerKeys(event) {
  const list = $("canned-list");
  if (!list.hidden) {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      const count = state.cannedOptions.length;
      if (count) state.cannedIndex = (state.cannedIndex + step + count) % count;
      renderCannedList();
      return;
    }
    if (event.key === "Enter" || event.key === "Tab") {
      if (state.cannedOptions.length) {
        event.preventDefault();
        insertCanned(state.cannedOptions[Math.max(0, state.cannedIndex)]);
        return;
      }
    }
    if (event.key === "Escape") {
      event.preventDefault();
      closeCanned();
      return;
    }
  }
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendMessage();
  }
}

function updateCanned() {
  const value = $("message-input").value;
  if (!value.startsWith("/")) {
    closeCanned();
    return;
  }
  state.cannedOptions = cannedMatches(state.canned, value.slice(1));
  state.cannedIndex = state.cannedOptions.length ? 0 : -1;
  $("canned-list").hidden = false;
  renderCannedList();
}

function renderCannedList() {
  const list = $("canned-list");
  list.replaceChildren();
  if (!state.cannedOptions.length) {
    list.append(el("li", { role: "option", "aria-disabled": "true", "aria-selected": "false",
      id: "canned-none", text: t("noCanned") }));
    $("message-input").removeAttribute("aria-activedescendant");
    return;
  }
  state.cannedOptions.forEach((item, index) => {
    const selected = index === state.cannedIndex;
    list.append(el("li", {
      role: "option", id: `canned-${index}`, "aria-selected": selected ? "true" : "false",
      class: selected ? "selected" : "",
      onmousedown: (event) => { event.preventDefault(); insertCanned(item); },
    }, el("strong", { text: `/${item.shortcut}` }), ` ${item.title}`));
  });
  $("message-input").setAttribute("aria-activedescendant", `canned-${state.cannedIndex}`);
}

function insertCanned(item) {
  const input = $("message-input");
  input.value = item.text;
  closeCanned();
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
}

function closeCanned() {
  $("canned-list").hidden = true;
  $("message-input").removeAttribute("aria-activedescendant");
  state.cannedOptions = [];
  state.cannedIndex = -1;
}

function globalKeys(event) {
  if (event.altKey && (event.key === "ArrowUp" || event.key === "ArrowDown")) {
    const ids = [...state.convs.values()].filter((c) => !c.readOnly).map((c) => c.id);
    if (!ids.length) return;
    event.preventDefault();
    const at = ids.indexOf(state.openId);
    const next = event.key === "ArrowDown" ? (at + 1) % ids.length
      : (at - 1 + ids.length) % ids.length;
    openConversation(ids[at === -1 ? 0 : next]);
    $("message-input").focus();
  }
}

// ---- rendering ------------------------------------------------------------------------

function renderAll() {
  renderQueue();
  renderConversations();
  renderConversation();
  renderOverview();
  renderActiveAll();
  renderCannedManage();
  renderHoursDays();
}

function renderTitle() {
  const unread = [...state.convs.values()].reduce((n, c) => n + c.unread, 0);
  const waiting = state.queue.size;
  const count = unread + waiting;
  document.title = (count ? `(${count}) ` : "") + t("appTitle");
}

function queuedSince(request) {
  return request.queuedAt || request.createdAt;
}

function renderQueue() {
  const list = $("queue-list");
  list.replaceChildren();
  const requests = [...state.queue.values()].sort((a, b) =>
    String(queuedSince(a)).localeCompare(String(queuedSince(b))));
  const positions = new Map();
  for (const request of requests) {
    const n = (positions.get(request.userGroupId) || 0) + 1;
    positions.set(request.userGroupId, n);
    const name = subscriberName(request.subscriber, request.subHandle);
    list.append(el("li", { class: "request" },
      el("span", { class: "who", text: name }), " ",
      el("span", { class: "wait", "data-since": queuedSince(request),
        text: t("waitingFor", { wait: formatWait(queuedSince(request)) }) }), " ",
      el("span", { class: "position muted",
        text: `${request.userGroupId} · ${t("position", { n })}` }), " ",
      el("button", { type: "button", text: t("accept"),
        onclick: () => accept(request) })));
  }
  $("queue-empty").hidden = requests.length > 0;
  renderTitle();
}

function renderConversations() {
  const list = $("conversation-list");
  list.replaceChildren();
  const convs = [...state.convs.values()].filter((c) => !c.readOnly);
  for (const conv of convs) {
    const name = subscriberName(conv.subscriber);
    const badge = conv.unread ? el("span", { class: "badge", text: t("unread", { n: conv.unread }) })
      : null;
    const status = conv.status === "active" ? null
      : el("span", { class: "muted", text: ` · ${t("statusEnded")}` });
    list.append(el("li", {}, el("button", {
      type: "button", class: "conv", "aria-current": conv.id === state.openId ? "true" : null,
      onclick: () => openConversation(conv.id),
    }, el("span", { class: "who", text: name }), status, " ", badge)));
  }
  $("conversations-empty").hidden = convs.length > 0;
  renderTitle();
}

function authorLabel(author) {
  if (author.type === "subscriber") {
    const conv = state.convs.get(state.openId);
    return subscriberName(conv && conv.subscriber, t("authorSubscriber"));
  }
  if (author.type === "agent") return author.id === state.me.id ? t("you") : author.name || author.id;
  if (author.type === "bot") return t("authorBot");
  return t("authorSystem");
}

function messageItem(message) {
  const classes = ["msg", `from-${message.author.type}`];
  if (message.private) classes.push("private");
  const body = el("div", { class: "body" });
  if (message.text) body.append(el("p", { text: message.text }));
  for (const attachment of message.attachments || []) {
    const name = attachment.name || attachment.url;
    if ((attachment.contentType || "").startsWith("image/")) {
      body.append(el("a", { href: attachment.url, target: "_blank", rel: "noopener" },
        el("img", { src: attachment.url, alt: name, class: "inline-image" })));
    } else {
      body.append(el("p", {}, el("a", { href: attachment.url, target: "_blank",
        rel: "noopener", class: "file", text: name })));
    }
  }
  return el("li", { class: classes.join(" "), "data-seq": String(message.seq) },
    el("div", { class: "meta" },
      el("span", { class: "author", text: authorLabel(message.author) }), " ",
      el("time", { datetime: message.at, text: timeOf(message.at) }),
      message.private ? el("span", { class: "tag", text: ` · ${t("internalNoteBadge")}` }) : null),
    body);
}

function appendMessage(message) {
  insertBySeq($("message-list"), messageItem(message), message.seq);
  const conv = state.convs.get(message.conversationId);
  if (conv) renderReceipts(conv);
  const log = $("messages");
  log.scrollTop = log.scrollHeight;
}

function renderConversation() {
  const conv = state.convs.get(state.openId);
  $("conversation-none").hidden = Boolean(conv);
  $("conversation-body").hidden = !conv;
  renderCustomer(conv);
  if (!conv) return;
  $("conversation-with").textContent = subscriberName(conv.subscriber);
  const list = $("message-list");
  list.replaceChildren();
  for (const seq of [...conv.messages.keys()].sort((a, b) => a - b)) {
    list.append(messageItem(conv.messages.get(seq)));
  }
  renderReceipts(conv);
  $("messages").scrollTop = $("messages").scrollHeight;
  const ended = conv.status !== "active";
  const stateText = [ended ? t("conversationEnded") : t("statusActive")];
  if (conv.flagged) stateText.push(t("flagged"));
  $("conversation-state").textContent = stateText.join(" · ");
  $("read-only").hidden = !conv.readOnly || ended;
  $("composer").hidden = conv.readOnly;
  for (const id of ["message-input", "send", "attach", "transfer", "flag", "leave", "end",
    "private-note"]) {
    $(id).disabled = ended;
  }
  $("flag").setAttribute("aria-pressed", conv.flagged ? "true" : "false");
  renderTyping();
}

/** "Read by …" under the last message each other agent has read; "Seen by the customer"
 * under the last agent message sent before the subscriber's read time. */
function renderReceipts(conv) {
  const list = $("message-list");
  for (const old of list.querySelectorAll(".receipt")) old.remove();
  const items = [...list.children];
  const marks = new Map();
  const mark = (item, text) => {
    if (!item) return;
    marks.set(item, [...(marks.get(item) || []), text]);
  };
  const byReader = new Map();
  for (const read of conv.reads.values()) {
    const item = items.filter((li) => Number(li.dataset.seq) <= read.seq).pop();
    if (item) byReader.set(item, [...(byReader.get(item) || []), read.name]);
  }
  for (const [item, names] of byReader) mark(item, t("readBy", { names: names.join(", ") }));
  if (conv.seenAt) {
    mark(items.filter((li) => {
      const message = conv.messages.get(Number(li.dataset.seq));
      return message && message.author.type !== "subscriber" && !message.private &&
        String(message.at) <= conv.seenAt;
    }).pop(), t("seenByCustomer"));
  }
  for (const [item, texts] of marks) {
    item.append(el("div", { class: "receipt muted", text: texts.join(" · ") }));
  }
}

function renderTyping() {
  const conv = state.convs.get(state.openId);
  const typing = conv && conv.typing && conv.typing.until > Date.now() ? conv.typing : null;
  const text = typing ? t("isTyping", { name: typing.name }) : "";
  if ($("typing").textContent !== text) $("typing").textContent = text;
}

function definition(list, term, value) {
  if (value === undefined || value === null || value === "") return;
  list.append(el("dt", { text: term }), el("dd", { text: String(value) }));
}

function renderCustomer(conv) {
  const body = $("customer-body");
  body.replaceChildren();
  if (!conv) {
    body.append(el("p", { class: "muted", text: t("noCustomer") }));
    return;
  }
  const subscriber = conv.subscriber || {};
  const facts = el("dl");
  definition(facts, t("name"), subscriber.name);
  definition(facts, t("email"), subscriber.email);
  definition(facts, t("phone"), subscriber.phone);
  definition(facts, t("locale"), subscriber.locale);
  definition(facts, t("group"), conv.userGroupId);
  body.append(facts);
  const custom = Object.entries(subscriber.custom || {});
  if (custom.length) {
    const list = el("dl");
    for (const [key, value] of custom) {
      definition(list, key, typeof value === "object" ? JSON.stringify(value) : value);
    }
    body.append(el("h3", { text: t("customFields") }), list);
  }
  const context = conv.context || {};
  const metadata = Object.entries(context.metadata || {});
  if (metadata.length) {
    const list = el("dl");
    for (const [key, value] of metadata) {
      definition(list, key, typeof value === "object" ? JSON.stringify(value) : value);
    }
    body.append(el("h3", { text: t("botContext") }), list);
  }
  const lines = context.transcript || [];
  if (lines.length) {
    const list = el("ol", { class: "bot-transcript" });
    for (const line of lines) {
      list.append(el("li", {}, el("span", { class: "author", text: `${line.author}: ` }),
        line.text || ""));
    }
    body.append(el("h3", { text: t("botTranscript") }), list);
  }
}

function renderOverview() {
  if (!state.me || !state.me.supervisor) return;
  const overview = state.overview;
  const queues = $("queues-rows");
  const agents = $("agents-rows");
  queues.replaceChildren();
  agents.replaceChildren();
  if (!overview) return;
  $("overview-at").textContent = t("updatedAt", { at: timeOf(overview.at) });
  for (const queue of overview.queues) {
    queues.append(el("tr", { "data-group": queue.userGroupId },
      el("th", { scope: "row", text: queue.userGroupId }),
      el("td", { text: String(queue.waiting) }),
      el("td", { text: formatSeconds(queue.longestWaitSeconds) }),
      el("td", { text: String(queue.agentsOnline) }),
      el("td", { text: String(queue.agentsAway) }),
      el("td", { text: String(queue.activeConversations) })));
  }
  for (const agent of overview.agents) {
    agents.append(el("tr", { "data-agent": agent.id },
      el("th", { scope: "row", text: agent.name || agent.id }),
      el("td", { text: t(agent.status) }),
      el("td", { text: `${agent.activeChats}/${agent.maxChats}` }),
      el("td", { text: agent.groups.join(", ") }),
      el("td", { text: agent.connectedSince ? dateTimeOf(agent.connectedSince) : "" })));
  }
}

function formatSeconds(seconds) {
  const minutes = Math.floor(seconds / 60);
  return `${minutes}:${String(seconds % 60).padStart(2, "0")}`;
}

function renderActiveAll() {
  if (!state.me || !state.me.supervisor) return;
  const list = $("active-list");
  list.replaceChildren();
  for (const item of state.activeAll) {
    const name = subscriberName(item.subscriber, item.subHandle);
    const agents = item.participants.filter((p) => !p.leftAt).map((p) => p.name || p.id);
    const joined = item.participants.some((p) => p.id === state.me.id && !p.leftAt);
    list.append(el("li", {},
      el("span", { class: "who", text: name }), " ",
      el("span", { class: "muted", text: `${item.userGroupId} · ${agents.join(", ")}` }), " ",
      el("button", { type: "button", text: t("open"), "aria-label": `${t("open")} ${name}`,
        onclick: () => viewReadOnly(item).catch(failed) }), " ",
      joined ? null : el("button", { type: "button", text: t("join"),
        onclick: () => join(item.id).catch(failed) })));
  }
}

const READ_ONLY_REFRESH_MS = 2000;
let readOnlyRefreshedAt = 0;

/** A conversation opened read-only gets no frames (the viewer is not in it): re-read its
 * transcript every READ_ONLY_REFRESH_MS while it is shown. */
function refreshReadOnly() {
  const conv = state.convs.get(state.openId);
  if (!conv || !conv.readOnly || conv.status !== "active" || document.hidden) return;
  if (Date.now() - readOnlyRefreshedAt < READ_ONLY_REFRESH_MS) return;
  readOnlyRefreshedAt = Date.now();
  const before = conv.messages.size;
  loadTranscript(conv).then(() => {
    if (conv.messages.size !== before && state.openId === conv.id) renderConversation();
  }).catch(() => {});
}

function tick() {
  refreshReadOnly();
  for (const wait of document.querySelectorAll(".wait[data-since]")) {
    wait.textContent = t("waitingFor", { wait: formatWait(wait.dataset.since) });
  }
  renderTyping();
}

function showView(name) {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.setAttribute("aria-pressed", tab.dataset.view === name ? "true" : "false");
  }
  $("view-work").hidden = name !== "work";
  $("view-history").hidden = name !== "history";
  $("view-supervisor").hidden = name !== "supervisor";
  $("view-manage").hidden = name !== "manage";
  if (name === "history") loadHistory(true).catch(failed);
  if (name === "manage") loadSettings().catch(failed);
}

// ---- history --------------------------------------------------------------------------

async function loadHistory(first) {
  const rows = $("history-rows");
  if (first) {
    rows.replaceChildren();
    state.history.cursor = null;
  }
  const cursor = state.history.cursor ? `&cursor=${encodeURIComponent(state.history.cursor)}` : "";
  const page = await state.api.get(
    `/agent/organizations/${org()}/livechat-conversations?status=ended&limit=20${cursor}`);
  for (const item of page.items) {
    const path = (format) => `/organizations/${org()}/livechat-messages?conversationId=` +
      `${encodeURIComponent(item.id)}&format=${format}`;
    const name = subscriberName(item.subscriber, item.subHandle);
    rows.append(el("tr", {},
      el("td", { text: name }),
      el("td", { text: item.endedAt ? dateTimeOf(item.endedAt) : "" }),
      el("td", {},
        el("button", { type: "button", text: t("downloadCsv"), "aria-label": `CSV ${name}`,
          onclick: () => state.api.download(path("csv"), `${item.id}.csv`).catch(failed) }), " ",
        el("button", { type: "button", text: t("downloadPdf"), "aria-label": `PDF ${name}`,
          onclick: () => state.api.download(path("pdf"), `${item.id}.pdf`).catch(failed) }))));
  }
  state.history.cursor = page.nextCursor;
  $("history-more").hidden = !page.nextCursor;
}

// ---- supervisor management ------------------------------------------------------------

const SETTING_FIELDS = ["routing", "maxConcurrentChats", "requestTimeoutSeconds",
  "inactivityTimeoutSeconds", "retentionDays", "rejectWhenUnavailable", "endOnLastLeave",
  "greeting"];

async function loadSettings() {
  const settings = await state.api.get(`/organizations/${org()}/livechat-settings`);
  for (const field of SETTING_FIELDS) {
    const input = $(`set-${field}`);
    if (input.type === "checkbox") input.checked = Boolean(settings[field]);
    else input.value = settings[field] ?? "";
  }
}

function wireManage() {
  $("settings-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const current = await state.api.get(`/organizations/${org()}/livechat-settings`);
    for (const field of SETTING_FIELDS) {
      const input = $(`set-${field}`);
      if (input.type === "checkbox") current[field] = input.checked;
      else if (input.type === "number") current[field] = Number(input.value);
      else current[field] = input.value || (field === "greeting" ? null : input.value);
    }
    try {
      await state.api.put(`/organizations/${org()}/livechat-settings`, current);
      state.routing = current.routing;
      $("manage-result").textContent = t("saved");
    } catch (error) {
      failed(error);
    }
  });
  $("canned-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { shortcut: $("canned-shortcut").value.trim(), title: $("canned-title").value,
      text: $("canned-text").value };
    const group = $("canned-group").value.trim();
    if (group) body.userGroupId = group;
    try {
      await state.api.post(`/organizations/${org()}/canned-responses`, body);
      event.target.reset();
      await loadCanned();
      $("manage-result").textContent = t("saved");
    } catch (error) {
      failed(error);
    }
  });
  const hoursPath = () => `/organizations/${org()}/user-groups/` +
    `${encodeURIComponent($("hours-group").value.trim())}/business-hours`;
  $("hours-load").addEventListener("click", async () => {
    try {
      fillHours(await state.api.get(hoursPath()));
    } catch (error) {
      if (error.status !== 404) return failed(error);
      fillHours(null);
      $("manage-result").textContent = t("hoursNone");
    }
  });
  $("hours-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const body = hoursFromForm();
      try {
        await state.api.patch(hoursPath(), body);
      } catch (error) {
        if (error.status !== 404) throw error;
        await state.api.post(hoursPath(), body);
      }
      state.hours = body;
      $("manage-result").textContent = t("saved");
    } catch (error) {
      failed(error);
    }
  });
  const zones = Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : [];
  $("hours-timezones").replaceChildren(...zones.map((zone) => el("option", { value: zone })));
  $("hours-timezone").value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  renderHoursDays();
  fillHours(null);
}

// ---- business hours form: every interval of every day, as stored -------------------------

const HOURS_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const DEFAULT_SPAN = ["09:00", "17:00"];

/** The seven rows of the weekly table, labelled in the current language; values kept. */
function renderHoursDays() {
  const rows = $("hours-days");
  const kept = rows.children.length ? hoursWeeklyFromForm(true) : state.hours?.weekly || {};
  rows.replaceChildren();
  for (const day of HOURS_DAYS) {
    const name = t(`day_${day}`);
    const open = el("input", { type: "checkbox", id: `hours-${day}-open`,
      "aria-label": t("openOn", { day: name }), checked: Boolean((kept[day] || []).length),
      onchange: () => syncHoursRow(day) });
    rows.append(el("tr", {},
      el("th", { scope: "row", text: name }),
      el("td", {}, open),
      el("td", { id: `hours-${day}-spans` })));
    renderDaySpans(day, (kept[day] || []).length ? kept[day] : [DEFAULT_SPAN]);
  }
}

/** The ids of a day's n-th interval inputs (the first keeps the plain ids). */
function spanIds(day, index) {
  const suffix = index ? `-${index + 1}` : "";
  return [`hours-${day}-from${suffix}`, `hours-${day}-to${suffix}`];
}

/** A day's intervals as inputs, each after the first with a "Remove" button, then "Add". */
function renderDaySpans(day, spans) {
  const name = t(`day_${day}`);
  const cell = $(`hours-${day}-spans`);
  cell.replaceChildren();
  spans.forEach(([from, to], index) => {
    const [fromId, toId] = spanIds(day, index);
    const labels = index
      ? [t("opensAtNth", { day: name, n: index + 1 }), t("closesAtNth", { day: name, n: index + 1 })]
      : [t("opensAt", { day: name }), t("closesAt", { day: name })];
    cell.append(el("div", { class: "hours-span" },
      el("input", { type: "time", id: fromId, value: from, "aria-label": labels[0] }), " – ",
      el("input", { type: "time", id: toId, value: to, "aria-label": labels[1] }),
      index ? el("button", { type: "button", text: t("removeSpan"),
        "aria-label": t("removeSpanOf", { day: name, n: index + 1 }),
        onclick: () => renderDaySpans(day, daySpans(day).filter((_, i) => i !== index)) })
        : null));
  });
  cell.append(el("button", { type: "button", text: t("addSpan"),
    "aria-label": t("addSpanOn", { day: name }),
    onclick: () => {
      const current = daySpans(day);
      const last = current[current.length - 1];
      renderDaySpans(day, [...current, last ? [last[1], last[1]] : DEFAULT_SPAN]);
      $(spanIds(day, current.length)[0]).focus();
    } }));
  syncHoursRow(day);
}

/** The intervals shown for a day, in order. */
function daySpans(day) {
  const spans = [];
  for (let index = 0; $(spanIds(day, index)[0]); index += 1) {
    const [fromId, toId] = spanIds(day, index);
    spans.push([$(fromId).value, $(toId).value]);
  }
  return spans;
}

function syncHoursRow(day) {
  const open = $(`hours-${day}-open`).checked;
  for (const control of $(`hours-${day}-spans`).querySelectorAll("input, button")) {
    control.disabled = !open;
  }
}

/** Fill the form from stored hours (``null``: none yet, Monday to Friday 09-17 offered). */
function fillHours(hours) {
  state.hours = hours;
  const weekly = hours ? hours.weekly : Object.fromEntries(
    HOURS_DAYS.slice(0, 5).map((day) => [day, [DEFAULT_SPAN]]));
  for (const day of HOURS_DAYS) {
    const spans = weekly[day] || [];
    $(`hours-${day}-open`).checked = Boolean(spans.length);
    renderDaySpans(day, spans.length ? spans : [DEFAULT_SPAN]);
  }
  if (hours) $("hours-timezone").value = hours.timezone;
  $("hours-enabled").checked = hours ? hours.enabled !== false : true;
  $("hours-holidays").value = hours ? (hours.holidays || []).join(", ") : "";
}

/** Each day's intervals as shown; ``[]`` closes a day (``keepClosed``: a closed day's
 * intervals too, so that re-rendering the table keeps what was typed). */
function hoursWeeklyFromForm(keepClosed = false) {
  const weekly = {};
  for (const day of HOURS_DAYS) {
    weekly[day] = keepClosed || $(`hours-${day}-open`).checked ? daySpans(day) : [];
  }
  return weekly;
}

function hoursFromForm() {
  const holidays = $("hours-holidays").value.split(/[\s,]+/).filter(Boolean);
  return { timezone: $("hours-timezone").value.trim(), weekly: hoursWeeklyFromForm(),
    holidays, enabled: $("hours-enabled").checked };
}

function renderCannedManage() {
  if (!state.me || !state.me.supervisor) return;
  const list = $("canned-manage");
  list.replaceChildren();
  for (const item of state.canned) {
    list.append(el("li", {},
      el("strong", { text: `/${item.shortcut}` }), ` ${item.title}`,
      item.userGroupId ? el("span", { class: "muted", text: ` · ${item.userGroupId}` }) : null, " ",
      el("button", { type: "button", text: t("delete"),
        "aria-label": `${t("delete")} /${item.shortcut}`,
        onclick: () => state.api.delete(
          `/organizations/${org()}/canned-responses/${encodeURIComponent(item.id)}`)
          .then(loadCanned).catch(failed) })));
  }
}

start();
