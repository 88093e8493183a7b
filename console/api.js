// The console's only way to the server: the public GraphQL API, over HTTP and graphql-transport-ws.

import { DOCUMENT_IDS } from "./document-ids.js";
import { createClient } from "./vendor/graphql-ws/client.js";

const KEY = "vouchsafe.session";
const TIMEOUT_MS = 20000;

// The session token lives in this tab's sessionStorage: never a cookie, so no other origin's
// request carries it, and it is gone when the tab closes or the user signs out.
export const session = {
  get token() {
    return sessionStorage.getItem(KEY);
  },
  set(token) {
    sessionStorage.setItem(KEY, token);
    resetLive();
  },
  clear() {
    sessionStorage.removeItem(KEY);
    resetLive();
  },
};

export class ApiError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

let onUnauthenticated = () => {};
export function whenUnauthenticated(callback) {
  onUnauthenticated = callback;
}

// Each document goes by its trusted-document id (documents/manifest.json, which the server trusts);
// by its text only if it has none or the server does not know the id (then that document always).
const NOT_FOUND = "PERSISTED_DOCUMENT_NOT_FOUND";
const byText = new Set();

function request(document, variables) {
  const id = byText.has(document) ? undefined : DOCUMENT_IDS.get(document);
  return id ? { documentId: id, variables } : { query: document, variables };
}

function unknownId(sent, errors) {
  return sent.documentId !== undefined && (errors || []).some((e) => (e.extensions || {}).code === NOT_FOUND);
}

export async function gql(document, variables = {}) {
  const sent = request(document, variables);
  const token = session.token;
  const body = await post(sent, token);
  if (unknownId(sent, body.errors)) {
    byText.add(document);
    return gql(document, variables);
  }
  const first = (body.errors || [])[0];
  if (first) {
    const code = (first.extensions || {}).code || "ERROR";
    // Only about the session still held: an answer to a token already dropped (signed out) moves nothing.
    if (code === "UNAUTHENTICATED" && token === session.token) onUnauthenticated();
    throw new ApiError(first.message, code);
  }
  return body.data;
}

async function post(payload, token) {
  const headers = {
    "Content-Type": "application/json",
    Accept: "application/graphql-response+json, application/json;q=0.9",
  };
  if (token) headers.Authorization = `Bearer ${token}`;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers,
      body: JSON.stringify(payload),
      credentials: "omit",
      signal: controller.signal,
    });
  } catch (error) {
    throw new ApiError(error.name === "AbortError" ? "timeout" : "network", "NETWORK");
  } finally {
    clearTimeout(timer);
  }
  try {
    return await response.json();
  } catch {
    throw new ApiError(`HTTP ${response.status}`, "HTTP");
  }
}

let client = null;

function live() {
  if (client === null) {
    const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/graphql`;
    client = createClient({
      url,
      lazy: true,
      retryAttempts: 20,
      keepAlive: 10000,
      connectionParams: () => ({ authorization: `Bearer ${session.token || ""}` }),
      jsonMessageReplacer: withoutText,
    });
  }
  return client;
}

function resetLive() {
  if (client !== null) {
    client.dispose();
    client = null;
  }
}

// graphql-ws checks that a subscribe payload has a `query` string: a payload sent by id carries
// an empty one, which this replacer leaves out of the message.
const sentById = new WeakSet();
function withoutText(key, value) {
  return key === "query" && sentById.has(this) ? undefined : value;
}

// Follows a subscription; onData gets each result's data. Returns the function that stops it.
export function subscribe(document, variables, onData, onError = () => {}) {
  if (!session.token) return () => {};
  let stop = null;
  const follow = () => {
    const sent = request(document, variables);
    if (sent.documentId !== undefined) sentById.add(Object.assign(sent, { query: "" }));
    stop = live().subscribe(sent, {
      next: (result) => {
        if (result.data) onData(result.data);
        else if (result.errors) onError(result.errors);
      },
      error: (errors) => {
        if (!unknownId(sent, Array.isArray(errors) ? errors : [])) return onError(errors);
        byText.add(document);
        follow();
      },
      complete: () => {},
    });
  };
  follow();
  return () => stop();
}

// A fresh key per intended action (crypto.getRandomValues: randomUUID needs a secure context).
export function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `console-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
