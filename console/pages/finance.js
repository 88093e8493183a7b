// /finance/settings, /finance/deposit, /finance/ledger.

import { gql, idempotencyKey } from "../api.js";
import { can, inBackground, onAccount, shownNow, state } from "../app.js";
import * as D from "../documents.js";
import { field, h, nextId, replace, showErrors, toast } from "../dom.js";
import { count, dateTime, money } from "../format.js";
import { t } from "../i18n.js";
import { roleNotice } from "./common.js";
import { CARD_TOKENS } from "./order_new.js";

export async function render(main, { page }) {
  if (page === "finance_settings") return settingsPage(main);
  if (page === "finance_deposit") return depositPage(main);
  return ledgerPage(main);
}

function checkbox(name, checked, label) {
  const id = nextId("cb");
  const input = h("input", { type: "checkbox", id, name, checked });
  input.dataset.field = name;
  return [input, h("div", { class: "check" }, input, h("label", { for: id }, label), h("p", { class: "error", hidden: true, dataset: { errorFor: name } }))];
}

function settingsPage(main) {
  const settings = state.account.financeSettings;
  const form = h("form", { class: "card", novalidate: true });
  const general = h("p", { class: "error", role: "alert", hidden: true });
  const threshold = h("input", { type: "text", inputmode: "decimal", name: "lowBalanceThreshold", value: settings.lowBalanceThreshold?.amount || "", placeholder: "0.00" });
  const [balance, balanceRow] = checkbox("billToBalanceEnabled", settings.billToBalanceEnabled, t("billToBalance"));
  const [card, cardRow] = checkbox("creditCardEnabled", settings.creditCardEnabled, t("useCard"));
  const method = h("select", { name: "defaultPaymentMethod" });
  const saved = h("p", { class: "ok", role: "status" });

  // The seed's rules, kept as the user clicks: one method stays on; the default is an enabled one.
  function sync() {
    balance.disabled = balance.checked && !card.checked;
    card.disabled = card.checked && !balance.checked;
    const current = method.value || settings.defaultPaymentMethod;
    const enabled = [balance.checked && "ACCOUNT_BALANCE", card.checked && "CREDIT_CARD"].filter(Boolean);
    replace(method, enabled.map((m) => h("option", { value: m, selected: m === current }, t(`method.${m}`))));
    if (!enabled.includes(current)) method.value = enabled[0];
  }
  balance.addEventListener("change", sync);
  card.addEventListener("change", sync);
  sync();
  method.value = settings.defaultPaymentMethod;

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    saved.textContent = "";
    const raw = threshold.value.trim();
    const input = {
      billToBalanceEnabled: balance.checked,
      creditCardEnabled: card.checked,
      defaultPaymentMethod: method.value,
      lowBalanceThreshold: raw || null,
      clearLowBalanceThreshold: raw === "",
    };
    try {
      const result = (await gql(D.SettingsUpdate, { input })).financeSettingsUpdate;
      if (result.errors.length) return showErrors(form, result.errors, general);
      showErrors(form, [], general);
      state.account.financeSettings = result.financeSettings;
      saved.textContent = t("settingsSaved");
    } catch (error) {
      showErrors(form, [{ message: error.message }], general);
    }
  });
  const readOnly = !can.money();
  const body = h(
    "fieldset",
    { disabled: readOnly, class: "plain" },
    h("legend", { class: "sr" }, t("settings")),
    h("h2", {}, t("notifications")),
    field(t("lowBalanceThreshold", { currency: state.account.currency }), threshold, { name: "lowBalanceThreshold", hint: t("thresholdHint") }),
    h("h2", {}, t("paymentSettings")),
    balanceRow,
    cardRow,
    h("p", { class: "hint" }, t("oneMethodRule")),
    field(t("defaultMethod"), method, { name: "defaultPaymentMethod", hint: t("defaultHint") }),
    h("p", { class: "notice" }, t("azureRule")),
    h("button", { type: "submit" }, t("saveSettings")),
  );
  replace(form, general, body, saved);
  replace(main, h("h1", {}, t("financeSettings")), readOnly ? roleNotice() : null, form);
}

function depositPage(main) {
  const form = h("form", { class: "card narrow", novalidate: true });
  const general = h("p", { class: "error", role: "alert", hidden: true });
  const amount = h("input", { type: "text", inputmode: "decimal", name: "amount", placeholder: "100.00", required: true });
  const token = h("select", { name: "cardToken" }, CARD_TOKENS.map((tok) => h("option", { value: tok }, t(`card.${tok}`))));
  const result = h("p", { class: "ok", role: "status", id: "deposit-result" });
  const balanceNow = h("p", { class: "big" }, `${t("balance")}${t("colon")}`, h("strong", { id: "deposit-balance" }, money(state.account.balance)));
  onAccount((account) => (balanceNow.querySelector("strong").textContent = money(account.balance)));
  let key = idempotencyKey();
  amount.addEventListener("input", () => (key = idempotencyKey()));
  token.addEventListener("change", () => (key = idempotencyKey()));
  const submit = h("button", { type: "submit" }, t("deposit"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (submit.disabled) return;
    submit.disabled = true;
    result.textContent = "";
    try {
      const input = { amount: amount.value.trim(), cardToken: token.value, idempotencyKey: key };
      const payload = (await gql(D.Deposit, { input })).fundsDeposit;
      if (payload.errors.length) {
        // The gateway's answers in words the partner can act on.
        showErrors(form, payload.errors.map((e) => ({ ...e, message: t(`payError.${e.code}`, {}, e.message) })), general);
      } else {
        showErrors(form, [], general);
        result.textContent = t("deposited", { amount: money(payload.ledgerEntry.amount), balance: money(payload.account.balance) });
        amount.value = "";
        key = idempotencyKey();
      }
    } catch (error) {
      showErrors(form, [{ message: error.message }], general);
    } finally {
      submit.disabled = false;
    }
  });
  if (!can.money()) return replace(main, h("h1", {}, t("depositFunds")), balanceNow, roleNotice());
  replace(form, general, field(t("amount", { currency: state.account.currency }), amount, { name: "amount" }), field(t("sandboxCard"), token, { name: "cardToken", hint: t("sandboxCardHint") }), submit, result);
  replace(main, h("h1", {}, t("depositFunds")), balanceNow, h("p", { class: "muted" }, t("depositIntro")), form);
}

const KINDS = ["DEPOSIT", "PURCHASE", "REFUND", "ADJUSTMENT"];
const LEDGER_PAGE = 20;

async function ledgerPage(main) {
  const kind = h("select", { name: "kind" }, h("option", { value: "" }, t("all")), KINDS.map((k) => h("option", { value: k }, t(`kind.${k}`))));
  const from = h("input", { type: "date", name: "from" });
  const to = h("input", { type: "date", name: "to" });
  const body = h("tbody");
  const summary = h("p", { class: "muted", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, t("loadMore"));
  let after = null;
  const shown = shownNow();

  function filter() {
    const value = {};
    if (kind.value) value.kinds = [kind.value];
    if (from.value) value.createdAfter = new Date(`${from.value}T00:00:00`).toISOString();
    if (to.value) value.createdBefore = new Date(new Date(`${to.value}T00:00:00`).getTime() + 86400000).toISOString();
    return value;
  }

  async function load(reset) {
    if (reset) after = null;
    const data = await gql(D.Ledger, { first: LEDGER_PAGE, after, filter: filter() });
    if (!shown()) return;
    const connection = data.viewer.account.ledger;
    const rows = connection.edges.map(({ node }) =>
      h(
        "tr",
        { dataset: { kind: node.kind } },
        h("td", {}, dateTime(node.createdAt)),
        h("td", {}, t(`kind.${node.kind}`)),
        h("td", {}, node.memo || "—", node.byApiKey ? h("span", { class: "muted" }, ` (${t("byApiKey")})`) : ""),
        h("td", { class: `num ${node.amount.amount.startsWith("-") ? "debit" : "credit"}` }, money(node.amount)),
        h("td", { class: "num" }, money(node.balanceAfter)),
      ),
    );
    if (reset) replace(body, rows);
    else body.append(...rows);
    if (reset && rows.length === 0) replace(body, h("tr", {}, h("td", { colspan: 5, class: "muted" }, t("noEntries"))));
    summary.textContent = t("entriesFound", { n: count(connection.totalCount) });
    after = connection.pageInfo.endCursor;
    more.hidden = !connection.pageInfo.hasNextPage;
  }
  more.addEventListener("click", () => inBackground(load(false)));
  for (const control of [kind, from, to]) control.addEventListener("change", () => inBackground(load(true)));
  onAccount(() => inBackground(load(true)));
  replace(
    main,
    h("h1", {}, t("ledger")),
    h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() }, field(t("kindLabel"), kind), field(t("from"), from), field(t("to"), to)),
    summary,
    h("table", { class: "grid", id: "ledger" }, h("thead", {}, h("tr", {}, [t("date"), t("kindLabel"), t("memo"), t("amountCol"), t("balanceAfter")].map((c) => h("th", { scope: "col" }, c)))), body),
    more,
  );
  await load(true);
}
