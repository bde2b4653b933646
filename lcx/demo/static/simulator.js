// The customer simulator: plays the demo tenant's bot (docs/api.md sections 3 and 4).
import { ApiError, BotApi } from "/console/try/bot_api.js";

const TOKEN_KEY = "lcx.demo.botToken";
const HANDLE_KEY = "lcx.demo.subHandle";
const WAIT_SECONDS = 20;

const $ = (id) => document.getElementById(id);
const state = { api: null, subHandle: null, cursor: 0, polling: null, open: false };

function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return {};
  }
}

function takeToken() {
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : ""));
  }
  return fromUrl || sessionStorage.getItem(TOKEN_KEY);
}

function newHandle() {
  const handle = `visitor-${crypto.randomUUID().slice(0, 8)}`;
  sessionStorage.setItem(HANDLE_KEY, handle);
  return handle;
}

function say(text) {
  $("state").textContent = text;
}

function showError(error) {
  $("error").textContent = error ? `${error.message}${error.code ? ` (${error.code})` : ""}` : "";
}

function addMessage(author, text, kind) {
  const item = document.createElement("li");
  item.className = kind;
  const who = document.createElement("span");
  who.className = "author";
  who.textContent = author;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  item.append(who, body);
  $("messages").append(item);
  item.scrollIntoView({ block: "nearest" });
}

function addEvent(received) {
  const { event } = received;
  const item = document.createElement("li");
  const title = document.createElement("strong");
  title.textContent = event.type;
  const meta = document.createElement("span");
  meta.className = "meta";
  const repeats = received.deliveries > 1 ? `, delivered ${received.deliveries} times` : "";
  meta.textContent = ` seq ${event.seq}, ${event.at}${repeats}`;
  const body = document.createElement("pre");
  body.textContent = JSON.stringify(event.data, null, 2);
  item.append(title, meta, body);
  $("event-list").append(item);
}

function applyEvent(event) {
  const data = event.data || {};
  const agent = (data.agent && (data.agent.name || data.agent.id)) || "the agent";
  switch (event.type) {
    case "CONVERSATION_BEGIN":
      say(`${agent} is talking with you`);
      break;
    case "MESSAGE": {
      const author = data.author || {};
      addMessage(author.name || author.id || author.type, data.text || "", author.type || "agent");
      $("typing").hidden = true;
      break;
    }
    case "CONVERSATION_TYPING":
      $("typing").textContent = `${agent} is typing…`;
      $("typing").hidden = !data.typing;
      break;
    case "TRANSFER_REQUEST":
      say(`${agent} is handing you over${data.toUserGroupId ? ` to ${data.toUserGroupId}` : ""}`);
      break;
    case "REQUEST_MISSED":
      finish(`Nobody answered within ${data.waitedSeconds} s`);
      break;
    case "CONVERSATION_END":
      finish(`The conversation ended (by ${data.endedBy}${data.reason ? `: ${data.reason}` : ""})`);
      break;
    default:
      break;
  }
}

function finish(text) {
  say(text);
  state.open = false;
  $("compose").hidden = true;
  $("typing").hidden = true;
  $("start").hidden = false;
  $("ask").textContent = "Ask for a human again";
}

async function pollEvents(subHandle) {
  const controller = new AbortController();
  state.polling = controller;
  while (state.subHandle === subHandle && !controller.signal.aborted) {
    try {
      const page = await state.api.events(subHandle, state.cursor, WAIT_SECONDS, controller.signal);
      for (const received of page.events) {
        addEvent(received);
        applyEvent(received.event);
      }
      state.cursor = page.next;
    } catch (error) {
      if (controller.signal.aborted) return;
      showError(error);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}

function follow(subHandle) {
  if (state.polling) state.polling.abort();
  state.subHandle = subHandle;
  state.cursor = 0;
  $("messages").replaceChildren();
  $("event-list").replaceChildren();
  pollEvents(subHandle);
}

async function ask(event) {
  event.preventDefault();
  showError(null);
  const name = $("name").value.trim() || "Ada";
  const opening = $("opening").value.trim() || "I would like to talk to a person";
  const subHandle = state.open ? state.subHandle : newHandle();
  try {
    const request = await state.api.createRequest(subHandle, name, opening);
    say(`Waiting for an agent (position ${request.position})`);
  } catch (error) {
    if (!(error instanceof ApiError && error.code === "conflict")) {
      showError(error);
      return;
    }
    say("Waiting for an agent (the request was already open)");
  }
  follow(subHandle);
  addMessage(name, opening, "subscriber");
  state.open = true;
  $("start").hidden = true;
  $("compose").hidden = false;
  $("text").focus();
}

async function send(event) {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  showError(null);
  try {
    await state.api.sendMessage(state.subHandle, text);
    addMessage($("name").value.trim() || "Ada", text, "subscriber");
    $("text").value = "";
  } catch (error) {
    showError(error);
  }
}

async function end() {
  showError(null);
  try {
    await state.api.endSession(state.subHandle);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) showError(error);
  }
}

async function resume(subHandle) {
  try {
    const current = await state.api.state(subHandle);
    if (current.state === "pending" || current.state === "active") {
      state.open = true;
      follow(subHandle);
      $("start").hidden = true;
      $("compose").hidden = false;
      say(current.state === "active" ? `${current.agent ? current.agent.name : "An agent"} is talking with you`
        : `Waiting for an agent (position ${current.position})`);
    }
  } catch (error) {
    showError(error);
  }
}

function main() {
  const token = takeToken();
  if (!token) {
    say("No bot token: open the simulator URL that lcx serve printed");
    $("ask").disabled = true;
    return;
  }
  const claims = claimsOf(token);
  const tenantId = (claims.tenants && claims.tenants[0]) || "demo";
  state.api = new BotApi(token, tenantId);
  $("start").addEventListener("submit", ask);
  $("compose").addEventListener("submit", send);
  $("end").addEventListener("click", end);
  const previous = sessionStorage.getItem(HANDLE_KEY);
  if (previous) resume(previous);
}

main();
