// /orders/new: the seed's "Add new voucher": customer, notes, lines, prices from voucherQuote, payment.

import { gql, idempotencyKey } from "../api.js";
import { can, navigate, state } from "../app.js";
import * as D from "../documents.js";
import { field, h, nextId, replace, showErrors } from "../dom.js";
import { money } from "../format.js";
import { t } from "../i18n.js";
import { partnerNotice, roleNotice } from "./common.js";

export const CARD_TOKENS = ["tok_visa", "tok_mastercard", "tok_chargeDeclined", "tok_gatewayError"];

function numberInput(name, value, min, max) {
  return h("input", { type: "number", inputmode: "numeric", name, value: String(value), min: String(min), max: String(max), step: "1" });
}

export async function render(main) {
  if (!state.account.isPartner) return replace(main, h("h1", {}, t("addVoucher")), partnerNotice());
  if (!can.money()) return replace(main, h("h1", {}, t("addVoucher")), roleNotice());
  const products = (await gql(D.Products)).products;
  const settings = state.account.financeSettings;
  const form = h("form", { class: "card", novalidate: true });
  const general = h("p", { class: "error", role: "alert", hidden: true });
  const customer = h("input", { type: "text", name: "customerName", maxlength: "200" });
  const notes = h("textarea", { name: "notes", rows: "2", maxlength: "2000" });
  const lineBody = h("tbody");
  const total = h("strong", { id: "order-total", "aria-live": "polite" }, "—");
  let key = idempotencyKey();
  let lines = [];

  function productOf(code) {
    return products.find((p) => p.code === code) || products[0];
  }

  function lineRow(index) {
    const line = lines[index];
    const product = productOf(line.productCode);
    const n = index + 1;
    const cell = (name, control, label) => {
      control.id = nextId("line");
      control.dataset.field = `lines.${index}.${name}`;
      control.setAttribute("aria-label", `${label} (${t("line")} ${n})`);
      control.setAttribute("aria-describedby", `${control.id}-err`);
      control.addEventListener("change", () => changed(index, name, control));
      control.addEventListener("input", () => changed(index, name, control));
      return h("td", {}, control, h("p", { class: "error", id: `${control.id}-err`, hidden: true, dataset: { errorFor: `lines.${index}.${name}` } }));
    };
    const productSelect = h("select", {}, products.map((p) => h("option", { value: p.code, selected: p.code === product.code }, p.name)));
    const validity = h("select", {}, product.validityYears.map((y) => h("option", { value: String(y), selected: y === line.validityYears }, t("years", { n: y }))));
    const wildcards = numberInput("wildcards", line.wildcards, 0, product.maxWildcards);
    if (product.maxWildcards === 0) wildcards.disabled = true;
    return h(
      "tr",
      { dataset: { line: String(index) } },
      cell("quantity", numberInput("quantity", line.quantity, 1, 1000), t("quantity")),
      cell("productCode", productSelect, t("certificateType")),
      cell("validityYears", validity, t("validity")),
      cell("fqdns", numberInput("fqdns", line.fqdns, 1, product.maxFqdns), t("fqdns")),
      cell("wildcards", wildcards, t("wildcards")),
      h("td", { class: "num", dataset: { price: String(index) } }, h("span", { class: "unit muted" }), h("br"), h("strong", { class: "line-price" }, "—")),
      h("td", {}, h("button", { type: "button", class: "secondary small", disabled: lines.length === 1, "aria-label": `${t("remove")} (${t("line")} ${n})`, onclick: () => removeLine(index) }, t("remove"))),
    );
  }

  function drawLines() {
    replace(lineBody, lines.map((_, i) => lineRow(i)));
    quoteSoon();
  }

  function addLine() {
    const product = products[0];
    lines.push({ productCode: product.code, quantity: 1, validityYears: product.validityYears[0], fqdns: product.includedFqdns, wildcards: 0 });
    key = idempotencyKey();
    drawLines();
    lineBody.querySelector(`tr[data-line="${lines.length - 1}"] input`)?.focus();
  }

  function removeLine(index) {
    lines.splice(index, 1);
    key = idempotencyKey();
    drawLines();
  }

  function changed(index, name, control) {
    const line = lines[index];
    key = idempotencyKey(); // other input: another order, so another key
    if (name === "productCode") {
      const product = productOf(control.value);
      line.productCode = product.code;
      if (!product.validityYears.includes(line.validityYears)) line.validityYears = product.validityYears[0];
      line.fqdns = Math.min(Math.max(line.fqdns, product.includedFqdns), product.maxFqdns);
      line.wildcards = Math.min(line.wildcards, product.maxWildcards);
      drawLines();
      return;
    }
    const value = parseInt(control.value, 10);
    line[name] = Number.isFinite(value) ? value : 0;
    quoteSoon();
  }

  let quoteTimer;
  let quoteSeq = 0;
  function quoteSoon() {
    clearTimeout(quoteTimer);
    quoteTimer = setTimeout(quote, 200);
  }

  async function quote() {
    const mine = ++quoteSeq;
    let result;
    try {
      result = (await gql(D.Quote, { input: { lines } })).voucherQuote;
    } catch (error) {
      return showErrors(form, [{ message: error.message }], general);
    }
    if (mine !== quoteSeq) return;
    showErrors(form, result.errors, general, { focus: false });
    result.lines.forEach((priced, i) => {
      const cell = lineBody.querySelector(`[data-price="${i}"]`);
      if (!cell) return;
      cell.querySelector(".unit").textContent = `${money(priced.unitPrice)} ${t("each")}`;
      cell.querySelector(".line-price").textContent = money(priced.linePrice);
    });
    if (!result.lines.length) for (const cell of lineBody.querySelectorAll("[data-price] .line-price")) cell.textContent = "—";
    total.textContent = result.total ? money(result.total) : "—";
  }

  // Payment: the enabled methods, the default preselected.
  const methods = [];
  if (settings.billToBalanceEnabled) methods.push("ACCOUNT_BALANCE");
  if (settings.creditCardEnabled) methods.push("CREDIT_CARD");
  const cardToken = h("select", { name: "cardToken" }, CARD_TOKENS.map((tok) => h("option", { value: tok }, t(`card.${tok}`))));
  const cardField = field(t("sandboxCard"), cardToken, { name: "cardToken", hint: t("sandboxCardHint") });
  const radios = methods.map((method) => {
    const id = nextId("pay");
    const input = h("input", { type: "radio", name: "paymentMethod", id, value: method, checked: method === settings.defaultPaymentMethod });
    input.addEventListener("change", () => {
      cardField.hidden = method !== "CREDIT_CARD";
      key = idempotencyKey();
    });
    return h("div", { class: "radio" }, input, h("label", { for: id }, t(`method.${method}`), method === settings.defaultPaymentMethod ? ` (${t("default")})` : ""));
  });
  cardField.hidden = settings.defaultPaymentMethod !== "CREDIT_CARD";

  const submit = h("button", { type: "submit" }, t("submit"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (submit.disabled) return;
    submit.disabled = true;
    const method = form.querySelector("input[name=paymentMethod]:checked")?.value || null;
    const input = {
      lines,
      customerName: customer.value.trim() || null,
      notes: notes.value.trim() || null,
      paymentMethod: method,
      cardToken: method === "CREDIT_CARD" ? cardToken.value : null,
      idempotencyKey: key,
    };
    try {
      const result = (await gql(D.OrderCreate, { input })).voucherOrderCreate;
      if (result.errors.length) {
        showErrors(form, result.errors, general);
        submit.disabled = false;
        return;
      }
      navigate(`/orders/${encodeURIComponent(result.order.number)}`);
    } catch (error) {
      showErrors(form, [{ message: error.message }], general);
      submit.disabled = false;
    }
  });

  addLine();
  replace(
    form,
    general,
    h("fieldset", {}, h("legend", {}, t("customerSection")), field(t("customerName"), customer, { name: "customerName" }), field(t("notes"), notes, { name: "notes", hint: t("notesHint") })),
    h(
      "fieldset",
      {},
      h("legend", {}, t("products")),
      h(
        "table",
        { class: "grid lines" },
        h("thead", {}, h("tr", {}, [t("quantity"), t("certificateType"), t("validity"), t("fqdns"), t("wildcards"), t("price"), ""].map((c) => h("th", { scope: "col" }, c)))),
        lineBody,
      ),
      h("p", { class: "error", hidden: true, dataset: { errorFor: "lines" } }),
      h("button", { type: "button", class: "secondary", onclick: addLine }, t("addProduct")),
    ),
    h("fieldset", {}, h("legend", {}, t("transactionSummary")), h("p", { class: "total" }, `${t("total")}${t("colon")}`, total)),
    h(
      "fieldset",
      {},
      h("legend", {}, t("paymentInformation")),
      radios,
      h("p", { class: "error", hidden: true, dataset: { errorFor: "paymentMethod" } }),
      cardField,
      h("p", { class: "hint" }, t("azureRule")),
    ),
    submit,
  );
  replace(main, h("h1", {}, t("addVoucher")), h("p", { class: "muted" }, t("oneCustomer")), form);
}
