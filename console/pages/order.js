// /orders/<number>: lines, status counts, vouchers (masked, paged), reveal, CSV, PDF (render again), cancel, history; live.

import { gql, idempotencyKey, subscribe } from "../api.js";
import { can, inBackground, onLeave, shownNow, state } from "../app.js";
import * as D from "../documents.js";
import { h, replace, toast } from "../dom.js";
import { count, dateTime, day, money } from "../format.js";
import { t } from "../i18n.js";
import { copyButton } from "./common.js";
import { statusCounts } from "./orders.js";

const VOUCHER_PAGE = 10;

// The history's details are the server's raw facts: only a failure's reason is shown in words,
// the rest stays in the item's tooltip.
function details(value) {
  if (!value || typeof value !== "object") return "";
  return String(value.error || value.reason || "");
}

function rawDetails(value) {
  if (!value || typeof value !== "object") return "";
  return Object.entries(value)
    .filter(([, v]) => v !== null && typeof v !== "object")
    .map(([k, v]) => `${k}: ${v}`)
    .join(", ");
}

export async function render(main, { params }) {
  const [number] = params;
  const shown = shownNow();
  const found = (await gql(D.OrderByNumber, { number })).voucherOrders.edges[0];
  if (!found) return replace(main, h("h1", {}, t("orderNotFound")), h("p", {}, h("a", { href: "/orders" }, t("backToOrders"))));
  let order = found.node;
  const revealed = new Map();
  let showCodes = false;
  const cursors = [null];
  let pageIndex = 0;
  let rendering = false;
  let version = 0;

  const summary = h("section", { "aria-labelledby": "order-title", class: "card" });
  const actions = h("section", { class: "actions", "aria-label": t("actions") });
  const pdfStatus = h("p", { id: "pdf-status", "aria-live": "polite" });
  const confirm = h("section", { class: "confirm", id: "cancel-confirm", hidden: true, role: "alertdialog", "aria-labelledby": "confirm-title", "aria-describedby": "confirm-text" });
  const linesTable = h("table", { class: "grid" });
  const voucherBody = h("tbody");
  const voucherPager = h("div", { class: "pager" });
  const voucherSummary = h("p", { class: "muted" });
  const history = h("ol", { class: "history", id: "history" });

  function drawSummary() {
    replace(
      summary,
      h("div", { class: "title" }, h("h1", { id: "order-title" }, `${t("order")} ${order.number}`), h("span", { class: `badge o-${order.status}`, id: "order-status", dataset: { status: order.status } }, t(`orderStatus.${order.status}`))),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, t("customer")), h("dd", {}, order.customerName || "—"),
        h("dt", {}, t("notesLabel")), h("dd", {}, order.notes || "—"),
        h("dt", {}, t("total")), h("dd", { id: "order-total" }, money(order.total)),
        h("dt", {}, t("paymentMethod")), h("dd", {}, t(`method.${order.paymentMethod}`)),
        h("dt", {}, t("date")), h("dd", {}, dateTime(order.createdAt)),
        h("dt", {}, t("vouchers")), h("dd", { id: "status-counts" }, statusCounts(order.statusCounts)),
      ),
    );
    replace(
      linesTable,
      h("caption", {}, t("products")),
      h("thead", {}, h("tr", {}, [t("quantity"), t("certificateType"), t("validity"), t("fqdns"), t("wildcards"), t("unitPrice"), t("price")].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        order.lines.map((line) =>
          h("tr", {}, h("td", { class: "num" }, count(line.quantity)), h("td", {}, line.productName), h("td", {}, t("years", { n: line.validityYears })), h("td", { class: "num" }, line.fqdns), h("td", { class: "num" }, line.wildcards), h("td", { class: "num" }, money(line.unitPrice)), h("td", { class: "num" }, money(line.linePrice))),
        ),
      ),
    );
    replace(
      history,
      order.history.edges.map(({ node }) =>
        h("li", { dataset: { kind: node.kind }, title: rawDetails(node.details) || false }, h("strong", {}, t(`event.${node.kind}`)), " · ", h("time", { datetime: node.createdAt }, dateTime(node.createdAt)), node.actor ? ` · ${node.actor}` : "", details(node.details) ? h("span", { class: "muted" }, ` (${details(node.details)})`) : ""),
      ),
    );
  }

  function drawPdf() {
    const pdf = order.pdf;
    pdfStatus.dataset.status = pdf.status;
    const parts = [h("span", {}, `${t("pdf")}${t("colon")}`), h("strong", {}, t(`pdf.${pdf.status}`))];
    if (pdf.status === "FAILED" && pdf.error) parts.push(` — ${pdf.error}`);
    replace(pdfStatus, parts);
  }

  function drawActions() {
    if (!can.money()) return replace(actions, drawPdfOnly());
    const active = order.status === "ACTIVE";
    const items = [
      h("button", { type: "button", id: "show-codes", "aria-pressed": String(showCodes), disabled: !active && !showCodes, onclick: toggleCodes }, showCodes ? t("hideCodes") : t("showCodes")),
      order.csvUrl && active ? h("a", { class: "button secondary", href: order.csvUrl, download: `${order.number}.csv`, id: "download-csv" }, t("downloadCsv")) : null,
      order.pdf.url && active ? h("a", { class: "button secondary", href: order.pdf.url, download: `${order.number}.pdf`, id: "download-pdf" }, t("downloadPdf")) : h("button", { type: "button", class: "secondary", disabled: true }, t("downloadPdf")),
      active ? h("button", { type: "button", class: "danger", id: "cancel-order", onclick: openConfirm }, t("cancelOrder")) : null,
    ];
    replace(actions, items, pdfStatus, renderButton(), blockers());
  }

  function drawPdfOnly() {
    return [pdfStatus, renderButton(), h("p", { class: "muted" }, t("memberOrder"))];
  }

  // The server's rule: the owner's ADMIN/FINANCE and staff, not while a render runs, not for a cancelled order.
  function renderButton() {
    const allowed = can.money() || Boolean(state.user?.isStaff);
    if (!allowed || order.status === "CANCELLED" || !["READY", "FAILED"].includes(order.pdf.status)) return null;
    return h("button", { type: "button", class: "secondary", id: "render-pdf", "aria-describedby": "pdf-status", disabled: rendering, onclick: renderAgain }, t("renderAgain"));
  }

  async function renderAgain(event) {
    rendering = true;
    event.target.disabled = true;
    const seen = version;
    try {
      const result = (await gql(D.OrderPdfRender, { input: { orderId: order.id } })).voucherOrderPdfRender;
      if (result.errors.length) toast(result.errors.map((e) => t(`renderError.${e.code}`, {}, e.message)).join(" "));
      else {
        toast(t("renderRequested"));
        // A live update newer than the request wins; otherwise show its PENDING at once.
        if (version === seen && result.order) order = { ...order, pdf: { ...order.pdf, ...result.order.pdf } };
      }
    } catch (error) {
      toast(error.message);
    }
    rendering = false;
    drawPdf();
    if (!confirm.contains(document.activeElement)) drawActions();
  }

  function blockers() {
    if (order.status !== "ACTIVE" || order.cancellable) return null;
    return h(
      "div",
      { class: "notice", id: "cancel-blockers" },
      h("p", {}, t("cannotCancel")),
      h("ul", {}, order.cancelBlockers.map((b) => h("li", { dataset: { code: b.code } }, t(`blocker.${b.code}`)))),
    );
  }

  function openConfirm() {
    const refund = t(order.paymentMethod === "ACCOUNT_BALANCE" ? "refundBalance" : "refundCard", { amount: money(order.total) });
    const buttons = order.cancellable
      ? [
          h("button", { type: "button", class: "danger", id: "confirm-cancel", onclick: doCancel }, t("confirmCancel")),
          h("button", { type: "button", class: "secondary", onclick: closeConfirm }, t("keepOrder")),
        ]
      : [h("button", { type: "button", class: "secondary", onclick: closeConfirm }, t("close"))];
    replace(
      confirm,
      h("h2", { id: "confirm-title" }, t("cancelTitle", { number: order.number })),
      h(
        "div",
        { id: "confirm-text" },
        order.cancellable ? h("p", {}, t("cancelEffect", { n: count(order.voucherCount) }), " ", h("strong", {}, refund)) : blockers(),
        h("p", { class: "muted" }, t("cancelRules")),
      ),
      h("div", { class: "row" }, buttons),
    );
    confirm.hidden = false;
    confirm.querySelector("button").focus();
  }

  function closeConfirm() {
    confirm.hidden = true;
    document.getElementById("cancel-order")?.focus();
  }

  async function doCancel(event) {
    event.target.disabled = true;
    try {
      const result = (await gql(D.OrderCancel, { input: { orderId: order.id, idempotencyKey: idempotencyKey() } })).voucherOrderCancel;
      if (result.errors.length) {
        toast(result.errors.map((e) => t(`blocker.${e.code}`, {}, e.message)).join(" "));
      } else toast(t("cancelled"));
    } catch (error) {
      toast(error.message);
    }
    confirm.hidden = true;
    await refresh();
  }

  async function toggleCodes() {
    if (showCodes) {
      showCodes = false;
      revealed.clear();
    } else {
      const result = (await gql(D.CodesReveal, { input: { orderId: order.id } })).voucherCodesReveal;
      if (result.errors.length) return toast(result.errors[0].message);
      for (const item of result.codes) revealed.set(item.voucher.id, item.code);
      showCodes = true;
    }
    drawActions();
    await loadVouchers();
    document.getElementById("show-codes")?.focus();
  }

  async function loadVouchers() {
    const data = await gql(D.OrderVouchers, { id: order.id, first: VOUCHER_PAGE, after: cursors[pageIndex] });
    if (!shown() || !data.node) return;
    const connection = data.node.vouchers;
    replace(
      voucherBody,
      connection.edges.map(({ node }) => {
        const full = showCodes ? revealed.get(node.id) : null;
        return h(
          "tr",
          { dataset: { voucher: node.id, status: node.status } },
          h("td", {}, h("code", { class: full ? "code full" : "code" }, full || node.code), full ? [" ", copyButton(full, `${t("copy")} ${full}`)] : null),
          h("td", {}, h("span", { class: `pill s-${node.status}` }, t(`status.${node.status}`))),
          h("td", {}, day(node.expiresAt)),
          h("td", {}, node.usedAt ? dateTime(node.usedAt) : "—"),
        );
      }),
    );
    const first = pageIndex * VOUCHER_PAGE + 1;
    voucherSummary.textContent = t("showingRange", { from: count(Math.min(first, connection.totalCount)), to: count(first - 1 + connection.edges.length), total: count(connection.totalCount) });
    cursors[pageIndex + 1] = connection.pageInfo.endCursor;
    replace(
      voucherPager,
      h("button", { type: "button", class: "secondary", disabled: pageIndex === 0, onclick: () => { pageIndex -= 1; inBackground(loadVouchers()); } }, t("previous")),
      h("button", { type: "button", class: "secondary", disabled: !connection.pageInfo.hasNextPage, onclick: () => { pageIndex += 1; inBackground(loadVouchers()); } }, t("next")),
    );
  }

  async function refresh() {
    const again = (await gql(D.OrderByNumber, { number: order.number })).voucherOrders.edges[0];
    if (again) updated(again.node);
  }

  function updated(next) {
    version += 1;
    order = next;
    drawSummary();
    drawPdf();
    if (!confirm.contains(document.activeElement)) drawActions();
    inBackground(loadVouchers());
  }

  drawSummary();
  drawPdf();
  drawActions();
  replace(
    main,
    h("p", {}, h("a", { href: "/orders" }, `← ${t("backToOrders")}`)),
    summary,
    actions,
    confirm,
    linesTable,
    h("section", { "aria-labelledby": "vouchers-title" }, h("h2", { id: "vouchers-title" }, t("vouchers")), voucherSummary, h("table", { class: "grid", id: "vouchers" }, h("thead", {}, h("tr", {}, [t("code"), t("status"), t("expires"), t("used")].map((c) => h("th", { scope: "col" }, c)))), voucherBody), voucherPager),
    h("section", { "aria-labelledby": "history-title" }, h("h2", { id: "history-title" }, t("history")), history),
  );
  await loadVouchers();
  // The order as it changes anywhere (a redemption, the PDF, a cancel): no reload.
  onLeave(subscribe(D.OrderLive, { id: order.id }, (live) => updated(live.voucherOrderUpdated)));
}
