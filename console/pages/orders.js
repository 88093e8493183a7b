// /orders (and /): the voucher orders, filtered by status and customer, each row live.

import { gql, subscribe } from "../api.js";
import { can, inBackground, onAccount, onLeave, shownNow, state } from "../app.js";
import * as D from "../documents.js";
import { field, h, replace } from "../dom.js";
import { count, dateTime, money } from "../format.js";
import { t } from "../i18n.js";
import { partnerNotice } from "./common.js";

// Each visible row has its own subscription; a connection takes 20, the header's balance uses one.
const PAGE_SIZE = 15;

export function statusCounts(counts) {
  return h(
    "span",
    { class: "counts" },
    [
      ["validUnused", "VALID_UNUSED"],
      ["validUsed", "VALID_USED"],
      ["expired", "EXPIRED"],
      ["cancelled", "CANCELLED"],
    ].map(([key, status]) =>
      h("span", { class: `pill s-${status}`, title: t(`status.${status}`), dataset: { count: key } }, `${t(`short.${status}`)} ${count(counts[key])}`),
    ),
  );
}

function row(order) {
  return h(
    "tr",
    { dataset: { order: order.number } },
    h("td", {}, h("a", { href: `/orders/${encodeURIComponent(order.number)}` }, order.number)),
    h("td", {}, order.customerName || h("span", { class: "muted" }, "—")),
    h("td", {}, h("span", { class: `badge o-${order.status}`, dataset: { status: order.status } }, t(`orderStatus.${order.status}`))),
    h("td", {}, statusCounts(order.statusCounts)),
    h("td", { class: "num" }, money(order.total)),
    h("td", {}, dateTime(order.createdAt)),
  );
}

export async function render(main, { query }) {
  if (state.account && !state.account.isPartner) {
    replace(main, h("h1", {}, t("voucherCodes")), partnerNotice());
    return;
  }
  const status = h(
    "select",
    { name: "status" },
    h("option", { value: "" }, t("all")),
    h("option", { value: "ACTIVE", selected: query.get("status") === "ACTIVE" }, t("orderStatus.ACTIVE")),
    h("option", { value: "CANCELLED", selected: query.get("status") === "CANCELLED" }, t("orderStatus.CANCELLED")),
  );
  const customer = h("input", { type: "search", name: "customer", value: query.get("customer") || "" });
  const body = h("tbody");
  const summary = h("p", { class: "muted", "aria-live": "polite" });
  const pager = h("div", { class: "pager" });
  let stops = [];
  const shown = shownNow();
  onLeave(() => stops.forEach((stop) => stop()));
  let cursor = { first: PAGE_SIZE };

  async function load() {
    const filter = { status: status.value || null, customerName: customer.value.trim() || null };
    const data = await gql(D.Orders, { ...cursor, filter });
    if (!shown()) return; // left meanwhile: no rows, and no live rows that nobody would stop
    const connection = data.voucherOrders;
    stops.forEach((stop) => stop());
    stops = [];
    replace(body, connection.edges.map((edge) => row(edge.node)));
    if (connection.edges.length === 0) replace(body, h("tr", {}, h("td", { colspan: 6, class: "muted" }, t("noOrders"))));
    summary.textContent = t("ordersFound", { n: count(connection.totalCount) });
    const info = connection.pageInfo;
    replace(
      pager,
      h("button", { type: "button", class: "secondary", disabled: !info.hasPreviousPage, onclick: () => page({ last: PAGE_SIZE, before: info.startCursor }) }, t("previous")),
      h("button", { type: "button", class: "secondary", disabled: !info.hasNextPage, onclick: () => page({ first: PAGE_SIZE, after: info.endCursor }) }, t("next")),
    );
    for (const edge of connection.edges) {
      stops.push(
        subscribe(D.OrderRowLive, { id: edge.node.id }, (live) => {
          const current = body.querySelector(`tr[data-order="${CSS.escape(live.voucherOrderUpdated.number)}"]`);
          if (current) current.replaceWith(row(live.voucherOrderUpdated));
        }),
      );
    }
  }
  function page(next) {
    cursor = next;
    inBackground(load());
  }
  let timer;
  const refilter = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      cursor = { first: PAGE_SIZE };
      const params = new URLSearchParams();
      if (status.value) params.set("status", status.value);
      if (customer.value.trim()) params.set("customer", customer.value.trim());
      history.replaceState({}, "", `${location.pathname}${params.size ? `?${params}` : ""}`);
      inBackground(load());
    }, 250);
  };
  status.addEventListener("change", refilter);
  customer.addEventListener("input", refilter);
  // A new order (paid from the balance or by card) changes the account: the first page shows it.
  onAccount(() => {
    if (!cursor.after && !cursor.before) inBackground(load());
  });

  replace(
    main,
    h("div", { class: "title" }, h("h1", {}, t("voucherCodes")), can.money() ? h("a", { href: "/orders/new", class: "button" }, t("addVoucher")) : null),
    h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() }, field(t("status"), status), field(t("customer"), customer)),
    summary,
    h(
      "table",
      { class: "grid" },
      h("caption", { class: "sr" }, t("voucherCodes")),
      h("thead", {}, h("tr", {}, [t("order"), t("customer"), t("status"), t("vouchers"), t("total"), t("date")].map((c) => h("th", { scope: "col" }, c)))),
      body,
    ),
    pager,
  );
  await load();
}
