// The console's shell: routes, the signed-in viewer, the header with the live balance, the menu.

import { gql, session, subscribe, whenUnauthenticated } from "./api.js";
import * as D from "./documents.js";
import { h, replace, toast } from "./dom.js";
import { money } from "./format.js";
import { LANGUAGES, language, setLanguage, t } from "./i18n.js";

// The same table as web/console.py's APP_PATHS; `auth`: who may open it.
const ROUTES = [
  { path: /^\/$/, page: "orders", auth: "account" },
  { path: /^\/signin$/, page: "signin", auth: "none" },
  { path: /^\/signup$/, page: "signup", auth: "none" },
  { path: /^\/orders$/, page: "orders", auth: "account" },
  { path: /^\/orders\/new$/, page: "order_new", auth: "account" },
  { path: /^\/orders\/([^/]+)$/, page: "order", auth: "account" },
  { path: /^\/finance\/settings$/, page: "finance_settings", auth: "account" },
  { path: /^\/finance\/deposit$/, page: "finance_deposit", auth: "account" },
  { path: /^\/finance\/ledger$/, page: "finance_ledger", auth: "account" },
  { path: /^\/account\/users$/, page: "account_users", auth: "account" },
  { path: /^\/account\/api-keys$/, page: "account_keys", auth: "account" },
  { path: /^\/account\/webhooks$/, page: "account_webhooks", auth: "account" },
  { path: /^\/staff\/accounts$/, page: "staff_accounts", auth: "staff" },
  { path: /^\/staff\/jobs$/, page: "staff_jobs", auth: "staff" },
];

const PAGES = {
  signin: () => import("./pages/signin.js"),
  signup: () => import("./pages/signin.js"),
  orders: () => import("./pages/orders.js"),
  order_new: () => import("./pages/order_new.js"),
  order: () => import("./pages/order.js"),
  finance_settings: () => import("./pages/finance.js"),
  finance_deposit: () => import("./pages/finance.js"),
  finance_ledger: () => import("./pages/finance.js"),
  account_users: () => import("./pages/account.js"),
  account_keys: () => import("./pages/account.js"),
  account_webhooks: () => import("./pages/webhooks.js"),
  staff_accounts: () => import("./pages/staff.js"),
  staff_jobs: () => import("./pages/staff.js"),
};

export const state = { user: null, account: null, stops: [], accountListeners: new Set() };

export const can = {
  money: () => ["ADMIN", "FINANCE"].includes(state.user?.role),
  admin: () => state.user?.role === "ADMIN",
};

function match(pathname) {
  for (const route of ROUTES) {
    const found = pathname.match(route.path);
    if (found) return { ...route, params: found.slice(1).map(decodeURIComponent) };
  }
  return null;
}

export function navigate(path, { replaceState = false } = {}) {
  history[replaceState ? "replaceState" : "pushState"]({}, "", path);
  render();
}

// Pages hear of the account's live changes (balance, settings) while they are shown.
export function onAccount(listener) {
  state.accountListeners.add(listener);
  state.stops.push(() => state.accountListeners.delete(listener));
}

export function onLeave(stop) {
  state.stops.push(stop);
}

let stopAccount = () => {};

async function loadViewer() {
  state.user = null;
  state.account = null;
  stopAccount();
  stopAccount = () => {};
  if (!session.token) return;
  const data = await gql(D.Viewer);
  state.user = data.viewer.user;
  state.account = data.viewer.account;
  if (state.account) {
    setLanguage(state.account.locale);
    stopAccount = subscribe(D.AccountLive, {}, (live) => accountChanged(live.accountUpdated));
  }
}

function accountChanged(account) {
  const before = state.account;
  state.account = account;
  if (before && before.locale !== account.locale) {
    setLanguage(account.locale);
    render();
    return;
  }
  drawHeader();
  for (const listener of state.accountListeners) listener(account);
}

export async function signedIn(token, next) {
  session.set(token);
  await loadViewer();
  navigate(next || (state.user?.isStaff && !state.account ? "/staff/accounts" : "/orders"), { replaceState: true });
}

async function signOut() {
  try {
    await gql(D.SignOut);
  } catch {
    // The token is forgotten here whatever the server answered.
  }
  session.clear();
  stopAccount();
  state.user = null;
  state.account = null;
  navigate("/signin");
}

function drawHeader() {
  const top = document.getElementById("top");
  const brand = h("a", { href: state.user ? "/orders" : "/signin", class: "brand" }, "vouchsafe");
  const picker = h(
    "select",
    { id: "language", "aria-label": t("language"), onchange: (e) => changeLanguage(e.target.value) },
    LANGUAGES.map(([code, name]) => h("option", { value: code, selected: code === language() }, name)),
  );
  const parts = [brand];
  if (state.account) {
    parts.push(
      h("span", { class: "account-name" }, state.account.name),
      h(
        "span",
        { class: "balance" },
        h("span", { class: "muted" }, `${t("balance")}${t("colon")}`),
        h("strong", { id: "balance", "aria-live": "polite" }, money(state.account.balance)),
      ),
    );
  }
  parts.push(h("span", { class: "spacer" }));
  parts.push(h("label", { class: "lang" }, h("span", { class: "sr" }, t("language")), picker));
  if (state.user) {
    parts.push(h("span", { class: "who muted", id: "session-email" }, state.user.email));
    parts.push(h("button", { type: "button", class: "link", onclick: signOut }, t("signOut")));
  }
  replace(top, parts);
}

async function changeLanguage(code) {
  if (state.account && can.admin()) {
    try {
      const data = await gql(D.AccountUpdate, { input: { locale: code } });
      const payload = data.accountUpdate;
      if (payload.errors.length) return toast(payload.errors[0].message);
      state.account = payload.account;
    } catch (error) {
      return toast(error.message);
    }
  }
  setLanguage(code, { remember: !(state.account && can.admin()) });
  render();
}

function link(href, label, current) {
  return h("li", {}, h("a", { href, "aria-current": current === href ? "page" : false }, label));
}

function drawNav(pathname) {
  const nav = document.getElementById("nav");
  if (!state.user) return replace(nav);
  const current = pathname === "/" ? "/orders" : pathname;
  const groups = [];
  if (state.account) {
    // A MEMBER is not offered what its role cannot do (the API refuses it anyway).
    const money = can.money();
    groups.push([
      t("finances"),
      [
        ["/orders", t("voucherCodes")],
        money && ["/orders/new", t("addVoucher")],
        ["/finance/settings", t("settings")],
        money && ["/finance/deposit", t("depositFunds")],
        ["/finance/ledger", t("ledger")],
      ].filter(Boolean),
    ]);
    groups.push([
      t("accountMenu"),
      [
        ["/account/users", t("users")],
        can.admin() && ["/account/api-keys", t("apiKeys")],
        money && ["/account/webhooks", t("webhooks")],
      ].filter(Boolean),
    ]);
  }
  if (state.user.isStaff) {
    groups.push([
      t("staff"),
      [
        ["/staff/accounts", t("accounts")],
        ["/staff/jobs", t("failedJobs")],
      ],
    ]);
  }
  replace(
    nav,
    groups.map(([title, items]) =>
      h("section", {}, h("h2", {}, title), h("ul", {}, items.map(([href, label]) => link(href, label, current)))),
    ),
  );
}

let renderCount = 0;

// For a page's render: whether that page is still the one shown. An answer can come after the
// page was left (another page, a sign-out), and then it must draw nothing.
export function shownNow() {
  const mine = renderCount;
  return () => mine === renderCount;
}

// A load no one awaits (a live update, a click): its failure is a toast while its page is shown,
// never an unhandled rejection.
export function inBackground(promise) {
  const shown = shownNow();
  promise.catch((error) => {
    if (shown()) toast(error.message);
  });
}

export async function render() {
  const mine = ++renderCount;
  for (const stop of state.stops.splice(0)) stop();
  const main = document.getElementById("main");
  const route = match(location.pathname);
  document.documentElement.lang = language();
  if (route === null) {
    drawHeader();
    drawNav(location.pathname);
    return replace(main, h("h1", {}, t("notFound")));
  }
  if (route.auth !== "none" && !state.user) {
    const next = location.pathname + location.search;
    return navigate(`/signin${next !== "/" ? `?next=${encodeURIComponent(next)}` : ""}`, { replaceState: true });
  }
  if (route.auth === "none" && state.user) return navigate("/orders", { replaceState: true });
  if (route.auth === "account" && !state.account && state.user?.isStaff) {
    return navigate("/staff/accounts", { replaceState: true });
  }
  drawHeader();
  drawNav(location.pathname);
  if (route.auth === "staff" && !state.user.isStaff) return replace(main, h("h1", {}, t("notFound")));
  const module = await PAGES[route.page]();
  if (mine !== renderCount) return;
  // Each render writes into a view of its own: a slower, older render that finishes after a newer
  // navigation fills a view no longer on the page, never the page the user moved to.
  const view = h("div", { class: "view" }, h("p", { class: "muted" }, t("loading")));
  replace(main, view);
  try {
    await module.render(view, { page: route.page, params: route.params, query: new URLSearchParams(location.search) });
  } catch (error) {
    if (mine === renderCount) replace(view, h("h1", {}, t("problem")), h("p", { class: "error", role: "alert" }, error.message));
  }
  if (mine === renderCount) {
    const heading = main.querySelector("h1");
    document.title = heading ? `${heading.textContent} · vouchsafe` : "vouchsafe";
  }
}

document.addEventListener("click", (event) => {
  const anchor = event.target.closest("a[href]");
  if (!anchor || anchor.hasAttribute("download") || anchor.target || event.defaultPrevented) return;
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const url = new URL(anchor.href);
  if (url.origin !== location.origin || match(url.pathname) === null) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
  document.getElementById("main").focus();
});
window.addEventListener("popstate", () => render());

whenUnauthenticated(() => {
  session.clear();
  state.user = null;
  state.account = null;
  navigate(`/signin?next=${encodeURIComponent(location.pathname)}`, { replaceState: true });
});

async function start() {
  try {
    await loadViewer();
  } catch {
    session.clear();
  }
  await render();
}

start();
