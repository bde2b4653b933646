'use strict';
// A benchmark reference, not part of lcx: the smallest Node.js service that does the
// durable work of lcx's relay path, so that scripts/bench_relay.py can measure both on one
// machine (issue 11). It speaks only the part of lcx's contract (API.md) that the bench
// uses: POST /requests, POST /messages, PUT /organizations/{org}/livechat-settings,
// GET /metrics, GET /healthz and the agent websocket at /ws (auth, REQUEST_ACCEPT,
// message frames), plus the bot events (CONVERSATION_BEGIN, MESSAGE) with lcx's
// signature and Idempotency-Key headers. No queue routing, slots, timers, RESUME or
// retention: see README.md.
//
// Durability is lcx's: one SQLite file in WAL mode with synchronous=FULL, the same tables
// and indexes as lcx's migrations, and each write committed (fsynced) before it is
// answered or told to anyone. Per user message: the idempotency key, the message row and
// the conversation's counters in one transaction; per agent message: the message row, the
// conversation's counters and one outbox row for the bot in one transaction. Bot events
// are POSTed after the commit on a keep-alive agent, one at a time per conversation (in
// order), and their rows are marked delivered in one transaction every 0.2 s.

const crypto = require('node:crypto');
const http = require('node:http');
const { parseArgs } = require('node:util');
const Database = require('better-sqlite3');
const { WebSocketServer } = require('ws');

const { values: options } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    db: { type: 'string' },
    'jwt-secret': { type: 'string' },
    'webhook-secret': { type: 'string' },
    'bot-url': { type: 'string' },
    tenant: { type: 'string', default: 't1' },
    org: { type: 'string', default: 'o1' },
    group: { type: 'string', default: 'g1' },
  },
});
for (const name of ['db', 'jwt-secret', 'webhook-secret', 'bot-url']) {
  if (!options[name]) {
    console.error(`--${name} is required`);
    process.exit(2);
  }
}

const TENANT = { id: options.tenant, org: options.org, group: options.group,
  botUrl: new URL(options['bot-url']), webhookKey: options['webhook-secret'] };
const JWT_KEY = Buffer.from(options['jwt-secret']);
const MAX_BODY_BYTES = 1024 * 1024;
const HEARTBEAT_SECONDS = 20;
const MARK_EVERY_MS = 200;
const MAX_ATTEMPTS = 8;
const DEFAULT_SETTINGS = { routing: 'broadcast', maxConcurrentChats: 3,
  requestTimeoutSeconds: 120, inactivityTimeoutSeconds: 900, rejectWhenUnavailable: false,
  endOnLastLeave: true, retentionDays: 365, greeting: null };

// --- ids, errors, tokens ---------------------------------------------------------------

/** A UUIDv7 (time-sortable, as lcx's ids). */
function uuid7() {
  const bytes = crypto.randomBytes(16);
  const ms = Date.now();
  bytes.writeUIntBE(ms, 0, 6);
  bytes[6] = 0x70 | (bytes[6] & 0x0f);
  bytes[8] = 0x80 | (bytes[8] & 0x3f);
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

class Refusal extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

function envelope(error) {
  const body = { code: error.code, message: error.message };
  if (error.details) body.details = error.details;
  return { error: body };
}

const verified = new Map(); // token -> [principal, exp ms]: lcx's TokenVerifier does the same
const VERIFIED_CACHE_SIZE = 10000;

/** The principal of an HS256 token signed with the bench's secret (exp required). */
function verify(token) {
  const known = verified.get(token);
  if (known !== undefined) {
    if (Date.now() < known[1]) return known[0];
    verified.delete(token);
  }
  const parts = typeof token === 'string' ? token.split('.') : [];
  if (parts.length !== 3) throw new Refusal(401, 'unauthorized', 'the token is malformed');
  let header, claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url'));
    claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
  } catch {
    throw new Refusal(401, 'unauthorized', 'the token is malformed');
  }
  if (header.alg !== 'HS256') throw new Refusal(401, 'unauthorized', 'the token algorithm is not allowed');
  const expected = crypto.createHmac('sha256', JWT_KEY).update(`${parts[0]}.${parts[1]}`).digest();
  const signature = Buffer.from(parts[2], 'base64url');
  if (signature.length !== expected.length || !crypto.timingSafeEqual(signature, expected)) {
    throw new Refusal(401, 'unauthorized', 'the token signature is invalid');
  }
  if (typeof claims.exp !== 'number') throw new Refusal(401, 'unauthorized', 'the token has no exp');
  if (Date.now() >= claims.exp * 1000) throw new Refusal(401, 'unauthorized', 'the token has expired');
  if (typeof claims.sub !== 'string' || typeof claims.scope !== 'string') {
    throw new Refusal(401, 'unauthorized', 'the token claims are invalid');
  }
  const principal = { sub: claims.sub, org: claims.org, name: claims.name ?? null,
    scopes: new Set(claims.scope.split(' ')), groups: claims.groups ?? [] };
  if (verified.size >= VERIFIED_CACHE_SIZE) verified.clear();
  verified.set(token, [principal, claims.exp * 1000]);
  return principal;
}

function requireScope(principal, ...scopes) {
  if (!scopes.some((scope) => principal.scopes.has(scope))) {
    throw new Refusal(403, 'forbidden', `this needs one of the scopes ${scopes.join(', ')}`);
  }
}

// --- the store -------------------------------------------------------------------------

const db = new Database(options.db);
if (db.pragma('journal_mode = WAL', { simple: true }) !== 'wal') throw new Error('no WAL');
db.pragma('synchronous = FULL');
db.pragma('busy_timeout = 5000');
// lcx's tables and indexes (lcx/store/migrations, the parts this path writes)
db.exec(`
CREATE TABLE IF NOT EXISTS org_settings (org_id TEXT PRIMARY KEY, settings TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, request_id TEXT NOT NULL UNIQUE, org_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL, sub_handle TEXT NOT NULL, user_group_id TEXT NOT NULL,
    provider TEXT NOT NULL, channel TEXT NOT NULL, status TEXT NOT NULL,
    subscriber TEXT NOT NULL, context TEXT NOT NULL, participants TEXT NOT NULL,
    flags TEXT NOT NULL, agent_id TEXT, agent_name TEXT, created_at TEXT NOT NULL,
    queued_at TEXT NOT NULL, accepted_at TEXT, accepted_by TEXT, ended_at TEXT,
    ended_by TEXT, end_reason TEXT, last_seq INTEGER NOT NULL DEFAULT 0,
    last_event_no INTEGER NOT NULL DEFAULT 0, last_activity_at TEXT NOT NULL,
    open_key TEXT UNIQUE);
CREATE INDEX IF NOT EXISTS conversations_org_status ON conversations (org_id, status, created_at);
CREATE INDEX IF NOT EXISTS conversations_subscriber ON conversations (tenant_id, sub_handle, created_at);
CREATE INDEX IF NOT EXISTS conversations_agent ON conversations (org_id, agent_id, status);
CREATE INDEX IF NOT EXISTS conversations_accepted_by ON conversations (org_id, accepted_by, created_at);
CREATE INDEX IF NOT EXISTS conversations_waiting ON conversations
    (org_id, user_group_id, status, queued_at, id, request_id) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS messages (
    conversation_id TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL, author_type TEXT NOT NULL, author_id TEXT, author_name TEXT,
    type TEXT NOT NULL, text TEXT, payload TEXT, attachments TEXT NOT NULL, client_id TEXT,
    at TEXT NOT NULL, private INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (conversation_id, seq));
CREATE INDEX IF NOT EXISTS messages_org_at ON messages (org_id, at);
CREATE TABLE IF NOT EXISTS idempotency_keys (scope TEXT NOT NULL, key TEXT NOT NULL,
    result TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (scope, key));
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, tenant_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL, event_no INTEGER NOT NULL, target TEXT NOT NULL,
    url TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT NOT NULL, last_error TEXT,
    created_at TEXT NOT NULL, delivered_at TEXT, UNIQUE (conversation_id, target, event_no));
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS outbox_lane ON outbox (conversation_id, target, status, event_no)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS outbox_dead ON outbox (status, created_at, id) WHERE status = 'dead';
`);

const sql = {
  putSettings: db.prepare(`INSERT INTO org_settings (org_id, settings, updated_at) VALUES (?, ?, ?)
      ON CONFLICT (org_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at`),
  getSettings: db.prepare('SELECT settings FROM org_settings WHERE org_id = ?'),
  insertConversation: db.prepare(`INSERT INTO conversations (id, request_id, org_id, tenant_id,
      sub_handle, user_group_id, provider, channel, status, subscriber, context, participants,
      flags, created_at, queued_at, last_seq, last_event_no, last_activity_at, open_key)
      VALUES (?, ?, ?, ?, ?, ?, 'helvia', 'bot', 'pending', '{}', '{}', '[]', '{}', ?, ?, 0, 0, ?, ?)`),
  accept: db.prepare(`UPDATE conversations SET status = 'active', participants = ?, agent_id = ?,
      agent_name = ?, accepted_at = ?, accepted_by = ?, last_event_no = ?, last_activity_at = ?
      WHERE id = ? AND last_seq = ? AND last_event_no = ?`),
  counters: db.prepare(`UPDATE conversations SET last_seq = ?, last_event_no = ?, last_activity_at = ?
      WHERE id = ? AND last_seq = ? AND last_event_no = ?`),
  claim: db.prepare(`INSERT INTO idempotency_keys (scope, key, result, created_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (scope, key) DO NOTHING`),
  remembered: db.prepare('SELECT result FROM idempotency_keys WHERE scope = ? AND key = ?'),
  insertMessage: db.prepare(`INSERT INTO messages (conversation_id, seq, id, org_id, author_type,
      author_id, author_name, type, text, payload, attachments, client_id, at, private)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, '[]', ?, ?, 0)`),
  queued: db.prepare('SELECT * FROM messages WHERE conversation_id = ? ORDER BY seq'),
  enqueue: db.prepare(`INSERT INTO outbox (id, org_id, tenant_id, conversation_id, event_no, target,
      url, type, body, status, attempts, next_attempt_at, created_at)
      VALUES (?, ?, ?, ?, ?, 'bot', ?, ?, ?, 'pending', 0, ?, ?)`),
  delivered: db.prepare(`UPDATE outbox SET status = 'delivered', attempts = ?, delivered_at = ?
      WHERE id = ? AND status = 'pending'`),
  retry: db.prepare('UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?'),
  dead: db.prepare(`UPDATE outbox SET status = 'dead', attempts = ?, last_error = ? WHERE id = ?
      AND status = 'pending'`),
};

let committed = 0; // write transactions committed, each its own COMMIT (one WAL fsync)

/** Run ``fn`` in one write transaction (BEGIN IMMEDIATE ... COMMIT); count the commit. */
function transaction(fn) {
  const result = db.transaction(fn).immediate();
  committed += 1;
  return result;
}

// --- conversations, in memory as lcx's actors hold them (the store is the truth) ---------

const conversations = new Map(); // id -> conversation
const byRequest = new Map(); // request id -> conversation
const openBySubscriber = new Map(); // "tenant/sub" -> conversation
const sockets = new Map(); // agent id -> Set of websockets

function eventBody(conversation, eventId, type, seq, at, data) {
  return JSON.stringify({ id: eventId, type, tenantId: conversation.tenantId,
    organizationId: conversation.org, subHandle: conversation.subHandle,
    requestId: conversation.requestId, conversationId: conversation.id, seq, at, data });
}

function enqueueEvent(conversation, eventNo, type, seq, at, data) {
  const id = uuid7();
  const body = eventBody(conversation, id, type, seq, at, data);
  sql.enqueue.run(id, conversation.org, conversation.tenantId, conversation.id, eventNo,
    TENANT.botUrl.href, type, body, at, at);
  return { id, conversationId: conversation.id, body, attempts: 0 };
}

function toAgents(conversation, frame) {
  const text = JSON.stringify(frame);
  for (const participant of conversation.participants) {
    for (const ws of sockets.get(participant.id) ?? []) ws.send(text);
  }
}

function messageFrame(conversation, message) {
  return { type: 'message', data: { conversationId: conversation.id, seq: message.seq,
    messageId: message.id, author: message.author, type: 'text', at: message.at,
    text: message.text } };
}

function createRequest(principal, body) {
  const tenant = tenantFor(principal, body);
  const key = `${tenant.id}/${body.subHandle}`;
  const open = openBySubscriber.get(key);
  if (open !== undefined) {
    throw new Refusal(409, 'conflict', 'the subscriber already has an open request or conversation',
      { requestId: open.requestId, conversationId: open.status === 'active' ? open.id : null });
  }
  const at = new Date().toISOString();
  const conversation = { id: uuid7(), requestId: uuid7(), org: tenant.org, tenantId: tenant.id,
    subHandle: body.subHandle, group: body.userGroupId ?? tenant.group, status: 'pending',
    participants: [], lastSeq: 0, lastEventNo: 0, createdAt: at, lastActivityAt: at };
  transaction(() => sql.insertConversation.run(conversation.id, conversation.requestId,
    conversation.org, conversation.tenantId, conversation.subHandle, conversation.group, at, at,
    at, key));
  conversations.set(conversation.id, conversation);
  byRequest.set(conversation.requestId, conversation);
  openBySubscriber.set(key, conversation);
  return { id: conversation.requestId, status: 'pending', position: 1, estimatedWaitSeconds: 30,
    conversationId: null, provider: 'helvia', userGroupId: conversation.group };
}

function postMessage(principal, body) {
  const tenant = tenantFor(principal, body);
  if (body.type !== undefined && body.type !== 'text') {
    throw new Refusal(400, 'invalid_request', 'this reference takes text messages only');
  }
  if (typeof body.text !== 'string' || (body.id !== undefined && typeof body.id !== 'string')) {
    throw new Refusal(400, 'invalid_request', 'text (and id) must be strings',
      { fields: ['text', 'id'] });
  }
  const scope = `bot:${tenant.id}`;
  const conversation = openBySubscriber.get(`${tenant.id}/${body.subHandle}`);
  if (conversation === undefined) {
    const earlier = body.id === undefined ? undefined : sql.remembered.get(scope, body.id);
    if (earlier !== undefined) return JSON.parse(earlier.result);
    throw new Refusal(404, 'not_found', 'the subscriber has no open request or conversation',
      { tenantId: tenant.id, subHandle: body.subHandle });
  }
  const at = new Date().toISOString();
  const message = { id: uuid7(), seq: conversation.lastSeq + 1, at, text: body.text,
    author: { type: 'subscriber', id: conversation.subHandle, name: null } };
  const result = { id: message.id, conversationId: conversation.id,
    requestId: conversation.requestId, seq: message.seq };
  const activity = conversation.status === 'active' ? at : conversation.lastActivityAt;
  const earlier = transaction(() => {
    if (body.id !== undefined
        && sql.claim.run(scope, body.id, JSON.stringify(result), at).changes === 0) {
      return sql.remembered.get(scope, body.id).result;
    }
    stored(sql.counters.run(message.seq, conversation.lastEventNo, activity, conversation.id,
      conversation.lastSeq, conversation.lastEventNo));
    sql.insertMessage.run(conversation.id, message.seq, message.id, conversation.org,
      'subscriber', conversation.subHandle, null, 'text', message.text, body.id ?? null, at);
    return undefined;
  });
  if (earlier !== undefined) return JSON.parse(earlier);
  conversation.lastSeq = message.seq;
  conversation.lastActivityAt = activity;
  if (conversation.status === 'active') toAgents(conversation, messageFrame(conversation, message));
  return result;
}

function stored(info) {
  if (info.changes !== 1) throw new Refusal(409, 'conflict', 'the conversation changed meanwhile');
}

function acceptRequest(agent, data) {
  const conversation = byRequest.get(data?.requestId);
  if (conversation === undefined || conversation.org !== agent.org) {
    throw new Refusal(404, 'not_found', 'no such request');
  }
  if (conversation.status !== 'pending') {
    throw new Refusal(409, 'conflict', 'the request is not pending');
  }
  const at = new Date().toISOString();
  const participants = [{ id: agent.sub, name: agent.name, joinedAt: at }];
  const eventNo = conversation.lastEventNo + 1;
  const events = [];
  transaction(() => {
    stored(sql.accept.run(JSON.stringify(participants), agent.sub, agent.name, at, agent.sub,
      eventNo, at, conversation.id, conversation.lastSeq, conversation.lastEventNo));
    events.push(enqueueEvent(conversation, eventNo, 'CONVERSATION_BEGIN', conversation.lastSeq,
      at, { agent: { id: agent.sub, name: agent.name } }));
  });
  Object.assign(conversation, { status: 'active', participants, lastEventNo: eventNo,
    lastActivityAt: at, agent: { id: agent.sub, name: agent.name } });
  for (const event of events) deliver(event);
  const messages = sql.queued.all(conversation.id).map((row) => ({
    conversationId: row.conversation_id, seq: row.seq, messageId: row.id,
    author: { type: row.author_type, id: row.author_id, name: row.author_name }, type: row.type,
    at: row.at, text: row.text }));
  return { conversationId: conversation.id, requestId: conversation.requestId, messages };
}

function agentMessage(agent, data) {
  const conversation = conversations.get(data?.conversationId);
  if (conversation === undefined || conversation.org !== agent.org) {
    throw new Refusal(404, 'not_found', 'no such conversation');
  }
  if (conversation.status !== 'active') throw new Refusal(409, 'conflict', 'the conversation is not active');
  if (!conversation.participants.some((p) => p.id === agent.sub)) {
    throw new Refusal(403, 'forbidden', 'not a participant of this conversation');
  }
  if (typeof data.text !== 'string') {
    throw new Refusal(400, 'invalid_request', 'text must be a string', { fields: ['text'] });
  }
  const at = new Date().toISOString();
  const author = { type: 'agent', id: agent.sub, name: agent.name };
  const message = { id: uuid7(), seq: conversation.lastSeq + 1, at, text: data.text, author };
  const eventNo = conversation.lastEventNo + 1;
  const event = transaction(() => {
    stored(sql.counters.run(message.seq, eventNo, at, conversation.id, conversation.lastSeq,
      conversation.lastEventNo));
    sql.insertMessage.run(conversation.id, message.seq, message.id, conversation.org, 'agent',
      agent.sub, agent.name, 'text', message.text, data.id ?? null, at);
    return enqueueEvent(conversation, eventNo, 'MESSAGE', message.seq, at, {
      messageId: message.id, author, type: 'text', text: message.text, attachments: [] });
  });
  Object.assign(conversation, { lastSeq: message.seq, lastEventNo: eventNo, lastActivityAt: at });
  toAgents(conversation, messageFrame(conversation, message));
  deliver(event);
  return { messageId: message.id, seq: message.seq, conversationId: conversation.id };
}

function tenantFor(principal, body) {
  requireScope(principal, 'bot', 'service');
  if (typeof body?.tenantId !== 'string' || typeof body.subHandle !== 'string') {
    throw new Refusal(400, 'invalid_request', 'tenantId and subHandle are required',
      { fields: ['tenantId', 'subHandle'] });
  }
  if (body.tenantId !== TENANT.id) throw new Refusal(404, 'not_found', 'no such tenant');
  if (principal.org !== TENANT.org) throw new Refusal(403, 'forbidden', 'another organization');
  return TENANT;
}

function putSettings(principal, org, body) {
  requireScope(principal, 'supervisor', 'service', 'admin');
  if (principal.org !== undefined && principal.org !== org) {
    throw new Refusal(403, 'forbidden', 'another organization');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new Refusal(400, 'invalid_request', 'the settings are an object');
  }
  const current = sql.getSettings.get(org);
  const settings = { ...DEFAULT_SETTINGS, ...(current && JSON.parse(current.settings)), ...body };
  transaction(() => sql.putSettings.run(org, JSON.stringify(settings), new Date().toISOString()));
  return settings;
}

// --- delivery to the bot: one lane per conversation, in order, after the commit ----------

const botAgent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const lanes = new Map(); // conversation id -> events waiting behind the one in flight
let marks = []; // [attempts, deliveredAt, id] of 2xx answers, stored every MARK_EVERY_MS

function deliver(event) {
  const lane = lanes.get(event.conversationId);
  if (lane !== undefined) {
    lane.push(event);
    return;
  }
  lanes.set(event.conversationId, []);
  post(event);
}

function post(event) {
  event.attempts += 1;
  const body = Buffer.from(event.body);
  const signature = crypto.createHmac('sha256', TENANT.webhookKey).update(body).digest('hex');
  const request = http.request(TENANT.botUrl, { method: 'POST', agent: botAgent, timeout: 10000,
    headers: { 'Content-Type': 'application/json', 'Content-Length': body.length,
      'Idempotency-Key': event.id, 'X-Lcx-Signature': `sha256=${signature}` } });
  request.on('response', (response) => {
    response.resume();
    response.on('end', () => answered(event, response.statusCode, response.headers));
  });
  request.on('timeout', () => request.destroy(new Error('timeout')));
  request.on('error', (error) => answered(event, 0, {}, error.message));
  request.end(body);
}

function answered(event, status, headers, error) {
  if (status >= 200 && status < 300) {
    marks.push([event.attempts, new Date().toISOString(), event.id]);
    next(event.conversationId);
    return;
  }
  const retryable = status === 0 || status === 429 || status >= 500;
  const why = error ?? `HTTP ${status}`;
  if (!retryable || event.attempts >= MAX_ATTEMPTS) {
    transaction(() => sql.dead.run(event.attempts, why, event.id));
    next(event.conversationId);
    return;
  }
  const after = Number(headers['retry-after']);
  const backoff = Number.isFinite(after) && after > 0 ? after * 1000
    : Math.min(30000, 200 * 2 ** (event.attempts - 1)) * (0.5 + Math.random() / 2);
  transaction(() => sql.retry.run(event.attempts, new Date(Date.now() + backoff).toISOString(),
    why, event.id));
  setTimeout(() => post(event), backoff);
}

function next(conversationId) {
  const lane = lanes.get(conversationId);
  if (lane.length === 0) lanes.delete(conversationId);
  else post(lane.shift());
}

function storeMarks() {
  if (marks.length === 0) return;
  const batch = marks;
  marks = [];
  transaction(() => { for (const mark of batch) sql.delivered.run(...mark); });
}
setInterval(storeMarks, MARK_EVERY_MS);

// --- HTTP ------------------------------------------------------------------------------

function reply(response, status, document, requestId, extra = {}) {
  const body = JSON.stringify(document);
  response.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body), 'X-Request-Id': requestId,
    'X-Content-Type-Options': 'nosniff', ...extra });
  response.end(body);
}

function principalOf(request) {
  const header = request.headers.authorization;
  if (typeof header !== 'string' || !header.startsWith('Bearer ')) {
    throw new Refusal(401, 'unauthorized', 'a bearer token is required');
  }
  return verify(header.slice(7));
}

function decodeJson(request, raw) {
  const type = (request.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/json') {
    throw new Refusal(415, 'unsupported_media_type', 'the body must be application/json');
  }
  try {
    return JSON.parse(raw);
  } catch (error) {
    throw new Refusal(400, 'invalid_request', `malformed JSON: ${error.message}`);
  }
}

const SETTINGS_PATH = /^\/organizations\/([^/]+)\/livechat-settings$/;

function route(request, raw) {
  const path = request.url.split('?')[0];
  if (request.method === 'POST' && path === '/messages') {
    const principal = principalOf(request);
    return [202, postMessage(principal, decodeJson(request, raw))];
  }
  if (request.method === 'POST' && path === '/requests') {
    const principal = principalOf(request);
    return [201, createRequest(principal, decodeJson(request, raw))];
  }
  const settings = SETTINGS_PATH.exec(path);
  if (settings && request.method === 'PUT') {
    const principal = principalOf(request);
    return [200, putSettings(principal, decodeURIComponent(settings[1]), decodeJson(request, raw))];
  }
  throw new Refusal(404, 'not_found', `no route for ${request.method} ${path}`);
}

function metrics() {
  // the names bench_relay.py reads (commits per pair): each transaction is its own commit
  return '# TYPE lcx_store_transactions_total counter\n'
    + `lcx_store_transactions_total{outcome="committed"} ${committed}\n`
    + '# TYPE lcx_store_commit_batches_total counter\n'
    + `lcx_store_commit_batches_total ${committed}\n`;
}

const server = http.createServer({ keepAliveTimeout: 300000 }, (request, response) => {
  const requestId = request.headers['x-request-id'] ?? uuid7();
  if (request.method === 'GET' && (request.url === '/metrics' || request.url === '/healthz')) {
    const text = request.url === '/metrics' ? metrics() : 'ok\n';
    response.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(text), 'X-Request-Id': requestId });
    response.end(text);
    return;
  }
  const chunks = [];
  let size = 0;
  let refused = false;
  request.on('data', (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES && !refused) {
      refused = true;
      reply(response, 413, envelope(new Refusal(413, 'payload_too_large',
        `the request body is larger than ${MAX_BODY_BYTES} bytes`)), requestId,
      { Connection: 'close' });
      request.destroy();
    } else if (!refused) {
      chunks.push(chunk);
    }
  });
  request.on('end', () => {
    if (refused) return;
    const raw = chunks.length === 1 ? chunks[0].toString() : Buffer.concat(chunks).toString();
    try {
      const [status, document] = route(request, raw);
      reply(response, status, document, requestId);
    } catch (error) {
      if (!(error instanceof Refusal)) console.error(error);
      const refusal = error instanceof Refusal ? error
        : new Refusal(500, 'internal', 'internal error', { traceId: requestId });
      reply(response, refusal.status, envelope(refusal), requestId);
    }
  });
});

// --- the agent websocket ---------------------------------------------------------------

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

server.on('upgrade', (request, socket, head) => {
  const url = new URL(request.url, 'http://localhost');
  if (url.pathname !== '/ws') {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(request, socket, head, (ws) => session(ws, url.searchParams.get('token')));
});

function errorFrame(ref, error) {
  const refusal = error instanceof Refusal ? error : new Refusal(500, 'internal', 'internal error');
  if (!(error instanceof Refusal)) console.error(error);
  const data = { code: refusal.code, message: refusal.message };
  if (refusal.details) data.details = refusal.details;
  return JSON.stringify({ type: 'event', event: 'ERROR', ref: ref ?? null, data });
}

function session(ws, token) {
  let agent = null;
  const authorize = (candidate) => {
    try {
      agent = verify(candidate);
      requireScope(agent, 'agent', 'supervisor');
    } catch (error) {
      ws.send(errorFrame(null, error));
      ws.close(4401, 'unauthorized');
      return;
    }
    clearTimeout(deadline);
    if (!sockets.has(agent.sub)) sockets.set(agent.sub, new Set());
    sockets.get(agent.sub).add(ws);
    ws.send(JSON.stringify({ type: 'event', event: 'AUTHORIZATION_GRANTED',
      data: { agentId: agent.sub, sessionId: uuid7(), heartbeatSeconds: HEARTBEAT_SECONDS } }));
  };
  const deadline = setTimeout(() => { if (agent === null) ws.close(4401, 'no auth'); }, 5000);
  const pings = setInterval(() => ws.ping(), HEARTBEAT_SECONDS * 1000);
  ws.on('close', () => {
    clearTimeout(deadline);
    clearInterval(pings);
    if (agent !== null) sockets.get(agent.sub)?.delete(ws);
  });
  if (token) authorize(token);
  ws.on('message', (raw, isBinary) => {
    let frame;
    try {
      frame = JSON.parse(isBinary ? raw : raw.toString());
    } catch (error) {
      ws.send(errorFrame(null, new Refusal(400, 'invalid_request', `malformed frame: ${error.message}`)));
      return;
    }
    if (agent === null) {
      if (frame?.type === 'auth') authorize(frame.token);
      else ws.send(errorFrame(frame?.ref, new Refusal(401, 'unauthorized', 'authenticate first')));
      return;
    }
    const ref = frame?.ref;
    try {
      let result;
      if (frame?.type === 'message') result = agentMessage(agent, frame.data);
      else if (frame?.type === 'ping') return void ws.send(JSON.stringify({ type: 'pong', ref }));
      else if (frame?.type === 'event' && frame.event === 'REQUEST_ACCEPT') result = acceptRequest(agent, frame.data);
      else throw new Refusal(400, 'invalid_request', 'this reference does not serve that frame');
      if (ref !== undefined && ref !== null) ws.send(JSON.stringify({ type: 'ack', ref, data: result }));
    } catch (error) {
      ws.send(errorFrame(ref, error));
    }
  });
}

server.listen(Number(options.port), options.host, () => {
  const { address, port } = server.address();
  console.log(`node relay reference listening on http://${address}:${port}`);
});

function stop() {
  server.close();
  for (const ws of wss.clients) ws.close(1012, 'shutting down');
  storeMarks();
  db.close();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
