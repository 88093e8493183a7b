// Apollo Client 4 against a real `vouchsafe serve`: automatic persisted queries and safelisting,
// as an SPA uses them (docs/trusted-documents.md). Every request the client sends is recorded
// and checked, not only the answers. Exits 1 when a check fails.
//   node apollo.mjs apq URL EMAIL                 a development server: hashes registered on first use
//   node apollo.mjs safelist URL EMAIL MANIFEST   an allow-list server that loaded MANIFEST
// Subscriptions go over GraphQLWsLink (graphql-ws), as the text Apollo prints: trusted by its hash.
import { readFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { isSubscriptionOperation } from "@apollo/client/utilities";
import { generatePersistedQueryIdsFromManifest } from "@apollo/persisted-query-lists";
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { ACCOUNT_UPDATED, PRODUCTS, SIGN_IN, SIGN_UP, VIEWER, VOUCHER_REDEEM } from "./spa/operations.js";

// A browser's global, which Apollo's GraphQLWsLink reads when a subscription fails (Node 20 has none).
globalThis.WebSocket ??= WebSocket;
const [mode, url, email, manifest] = process.argv.slice(2);
const PASSWORD = "correct horse battery staple";
// Not in the SPA's manifest: what an attacker, or a developer's console, would send.
const UNLISTED = gql`
  query Unlisted {
    products { code }
  }
`;
const UNLISTED_SUBSCRIPTION = gql`
  subscription UnlistedAccount {
    accountUpdated { currency }
  }
`;

const failures = [];
function check(ok, what, detail) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}${ok ? "" : `: ${JSON.stringify(detail)}`}`);
  if (!ok) failures.push(what);
}

// Each client records what it sent: method, whether the document's text went along, the status.
function client(persisted, { get = false } = {}) {
  const sent = [];
  const recording = async (uri, init) => {
    const response = await fetch(uri, init);
    const params = init.method === "GET" ? Object.fromEntries(new URL(uri).searchParams) : JSON.parse(init.body);
    sent.push({ method: init.method, text: "query" in params, status: response.status });
    return response;
  };
  const http = new HttpLink({ uri: url, fetch: recording });
  const options = get ? { ...persisted, useGETForHashedQueries: true } : persisted;
  const link = persisted ? new PersistedQueryLink(options).concat(http) : http;
  return { apollo: new ApolloClient({ cache: new InMemoryCache(), link }), sent };
}

const sha256 = { sha256: (text) => createHash("sha256").update(text).digest("hex") };
const auth = (token) => ({ headers: { authorization: `Bearer ${token}` } });
const shape = (sent) => sent.map((s) => `${s.method} ${s.text ? "text" : "hash"} ${s.status}`);

async function refusal(run) {
  try {
    await run();
    return null;
  } catch (error) {
    return error.errors?.[0]?.extensions?.code ?? `${error.name}: ${error.message}`;
  }
}

async function signedIn(apollo) {
  const account = { email, password: PASSWORD, accountName: "Apollo Reseller", locale: "en" };
  const up = await apollo.mutate({ mutation: SIGN_UP, variables: { input: account } });
  check(up.data.signUp.errors.length === 0 && up.data.signUp.user.email === email, "SignUp ran", up.data);
  const inn = await apollo.mutate({ mutation: SIGN_IN, variables: { input: { email, password: PASSWORD } } });
  check(Boolean(inn.data.signIn.token), "SignIn gave a token", inn.data.signIn.errors);
  return inn.data.signIn.token;
}

async function redeemRefused(apollo, token) {
  const input = { code: "VS-AAAAA-AAAAA-AAAAA-AAAAA", commonName: "shop.example.com" };
  const result = await apollo.mutate({ mutation: VOUCHER_REDEEM, variables: { input }, context: auth(token) });
  const errors = result.data.voucherRedeem.errors;
  check(
    errors.length === 1 && errors[0].code === "NOT_FOUND" && errors[0].field.join(".") === "input.code",
    "an unknown code is the payload's error, with its code and field",
    errors,
  );
}

// Live updates as an SPA follows them: Apollo's GraphQLWsLink on graphql-ws, the token in connection_init.
async function firstUpdate(token, query) {
  const ws = createClient({
    url: url.replace(/^http/, "ws"),
    connectionParams: { authorization: `Bearer ${token}` },
    retryAttempts: 0,
  });
  const http = new HttpLink({ uri: url });
  const link = ApolloLink.split(({ query: doc }) => isSubscriptionOperation(doc), new GraphQLWsLink(ws), http);
  const apollo = new ApolloClient({ cache: new InMemoryCache(), link });
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no update within 10 s")), 10_000);
      const subscription = apollo.subscribe({ query }).subscribe({
        next: (result) => {
          clearTimeout(timer);
          subscription.unsubscribe();
          resolve(result.error ? (result.error.errors?.[0]?.extensions?.code ?? String(result.error)) : result.data);
        },
        error: (error) => {
          clearTimeout(timer);
          resolve(error.errors?.[0]?.extensions?.code ?? String(error));
        },
      });
    });
  } finally {
    await ws.dispose();
  }
}

async function liveUpdates(token) {
  const first = await firstUpdate(token, ACCOUNT_UPDATED);
  check(first?.accountUpdated?.name === "Apollo Reseller", "AccountUpdated's first update over graphql-ws", first);
  return first;
}

async function apq() {
  // The first client to use a document registers it: its hash, refused, then hash and text.
  const first = client(sha256);
  const products = await first.apollo.query({ query: PRODUCTS, fetchPolicy: "no-cache" });
  check(products.data.products.length > 0, "Products answered", products.data);
  check(
    shape(first.sent).join() === "POST hash 404,POST text 200",
    "an unknown hash is PERSISTED_QUERY_NOT_FOUND, then the text runs",
    shape(first.sent),
  );
  // Another client (another tab, another instance's visitor) sends the hash alone, by GET too.
  const second = client(sha256, { get: true });
  const again = await second.apollo.query({ query: PRODUCTS, fetchPolicy: "no-cache" });
  check(JSON.stringify(again.data) === JSON.stringify(products.data), "the hash alone gives the same answer", again.data);
  check(shape(second.sent).join() === "GET hash 200", "a registered query runs by GET with its hash alone", shape(second.sent));

  const token = await signedIn(first.apollo);
  const viewer = await second.apollo.query({ query: VIEWER, fetchPolicy: "no-cache", context: auth(token) });
  check(viewer.data.viewer.user.email === email, "Viewer answered for the token", viewer.data);
  await redeemRefused(first.apollo, token);
  await liveUpdates(token);
  const third = client(sha256);
  await redeemRefused(third.apollo, token);
  check(shape(third.sent).join() === "POST hash 200", "a registered mutation runs by POST with its hash alone", shape(third.sent));
}

async function safelist() {
  // Apollo's safelisting: ids from the manifest the build wrote; the text never leaves the client.
  const ids = generatePersistedQueryIdsFromManifest({
    loadManifest: async () => JSON.parse(await readFile(manifest, "utf8")),
  });
  const spa = client(ids);
  const token = await signedIn(spa.apollo);
  const products = await spa.apollo.query({ query: PRODUCTS, fetchPolicy: "no-cache" });
  check(products.data.products.length > 0, "Products answered", products.data);
  const viewer = await spa.apollo.query({ query: VIEWER, fetchPolicy: "no-cache", context: auth(token) });
  check(viewer.data.viewer.user.email === email, "Viewer answered for the token", viewer.data);
  await redeemRefused(spa.apollo, token);
  check(
    spa.sent.length === 5 && spa.sent.every((s) => !s.text && s.status === 200),
    "every operation ran by its id alone, in one request",
    shape(spa.sent),
  );

  // Anything else is refused, whether the client offers the text (APQ) or sends only the text.
  const apqClient = client(sha256);
  const code = await refusal(() => apqClient.apollo.query({ query: UNLISTED, fetchPolicy: "no-cache" }));
  check(code === "PERSISTED_QUERY_REQUIRED", "an unlisted document is refused after APQ offers its text", code);
  check(shape(apqClient.sent).join() === "POST hash 404,POST text 403", "hash 404, then text 403", shape(apqClient.sent));
  await liveUpdates(token);
  const unlisted = await firstUpdate(token, UNLISTED_SUBSCRIPTION);
  check(unlisted === "PERSISTED_QUERY_REQUIRED", "an unlisted subscription is refused over graphql-ws", unlisted);
  const plain = client(null);
  const plainCode = await refusal(() => plain.apollo.query({ query: UNLISTED, fetchPolicy: "no-cache" }));
  check(plainCode === "PERSISTED_QUERY_REQUIRED", "an unlisted document's text alone is refused", plainCode);
}

if (mode === "apq") {
  await apq();
} else if (mode === "safelist") {
  await safelist();
} else {
  console.error("usage: node apollo.mjs apq URL EMAIL | safelist URL EMAIL MANIFEST");
  process.exit(2);
}
console.log(failures.length ? `${failures.length} check(s) failed` : "every check passed");
process.exit(failures.length ? 1 : 0);
