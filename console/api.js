// The console's only way to the server: the public GraphQL API, over HTTP and graphql-transport-ws.

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

export async function gql(document, variables = {}) {
  const headers = {
    "Content-Type": "application/json",
    Accept: "application/graphql-response+json, application/json;q=0.9",
  };
  const token = session.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers,
      body: JSON.stringify({ query: document, variables }),
      credentials: "omit",
      signal: controller.signal,
    });
  } catch (error) {
    throw new ApiError(error.name === "AbortError" ? "timeout" : "network", "NETWORK");
  } finally {
    clearTimeout(timer);
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`HTTP ${response.status}`, "HTTP");
  }
  const first = (body.errors || [])[0];
  if (first) {
    const code = (first.extensions || {}).code || "ERROR";
    if (code === "UNAUTHENTICATED") onUnauthenticated();
    throw new ApiError(first.message, code);
  }
  return body.data;
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

// Follows a subscription; onData gets each result's data. Returns the function that stops it.
export function subscribe(document, variables, onData, onError = () => {}) {
  if (!session.token) return () => {};
  return live().subscribe(
    { query: document, variables },
    {
      next: (result) => {
        if (result.data) onData(result.data);
        else if (result.errors) onError(result.errors);
      },
      error: onError,
      complete: () => {},
    },
  );
}

// A fresh key per intended action (crypto.getRandomValues: randomUUID needs a secure context).
export function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `console-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
