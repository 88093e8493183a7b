// /staff/accounts and /staff/jobs: the operator's people.

import { gql, idempotencyKey } from "../api.js";
import { inBackground } from "../app.js";
import * as D from "../documents.js";
import { field, h, nextId, replace, showErrors, toast } from "../dom.js";
import { count, dateTime, money } from "../format.js";
import { t } from "../i18n.js";

export async function render(main, { page }) {
  return page === "staff_accounts" ? accountsPage(main) : jobsPage(main);
}

const PAGE = 20;

async function accountsPage(main) {
  const search = h("input", { type: "search", name: "search" });
  const list = h("div", { class: "accounts", id: "accounts" });
  const summary = h("p", { class: "muted", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, t("loadMore"));
  let after = null;

  function card(account) {
    const memo = h("input", { type: "text", name: "memo", maxlength: "200" });
    const amount = h("input", { type: "text", inputmode: "decimal", name: "amount", placeholder: "-10.00 / 25.00" });
    const general = h("p", { class: "error", role: "alert", hidden: true });
    const balance = h("strong", { class: "acct-balance" }, money(account.balance));
    const partner = h("span", { class: `badge ${account.isPartner ? "o-ACTIVE" : "o-CANCELLED"}`, dataset: { partner: String(account.isPartner) } }, account.isPartner ? t("partner") : t("notPartner"));
    const toggle = h("button", { type: "button", class: "secondary", "aria-label": `${account.isPartner ? t("disableVouchers") : t("enableVouchers")}: ${account.name}` }, account.isPartner ? t("disableVouchers") : t("enableVouchers"));
    toggle.addEventListener("click", async () => {
      const result = (await gql(D.PartnerEnable, { input: { accountId: account.id, enabled: !account.isPartner } })).partnerEnable;
      if (result.errors.length) return toast(result.errors[0].message);
      account.isPartner = result.account.isPartner;
      el.replaceWith(card(account));
    });
    const form = h("form", { class: "adjust", novalidate: true });
    let key = idempotencyKey();
    form.addEventListener("input", () => (key = idempotencyKey()));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = { accountId: account.id, amount: amount.value.trim(), memo: memo.value, idempotencyKey: key };
      const result = (await gql(D.BalanceAdjust, { input })).balanceAdjust;
      if (result.errors.length) return showErrors(form, result.errors, general);
      showErrors(form, [], general);
      account.balance = result.account.balance;
      balance.textContent = money(account.balance);
      amount.value = "";
      memo.value = "";
      key = idempotencyKey();
      toast(t("adjusted"));
    });
    replace(form, general, h("div", { class: "row" }, field(t("adjustAmount"), amount, { name: "amount" }), field(t("memo"), memo, { name: "memo" })), h("button", { type: "submit", "aria-label": `${t("adjust")}: ${account.name}` }, t("adjust")));
    const headingId = nextId("acct");
    const el = h(
      "article",
      { class: "card", "aria-labelledby": headingId, dataset: { account: account.name } },
      h("div", { class: "title" }, h("h2", { id: headingId }, account.name), partner),
      h("p", { class: "muted" }, `${t("created")} ${dateTime(account.createdAt)} · ${account.locale} · ID ${account.id}`),
      h("p", {}, `${t("balance")}${t("colon")}`, balance, " ", toggle),
      form,
    );
    return el;
  }

  let generation = 0; // an answer to an older search must not replace a newer one's cards
  async function load(reset) {
    const mine = ++generation;
    if (reset) after = null;
    const data = await gql(D.StaffAccounts, { first: PAGE, after, search: search.value.trim() || null });
    if (mine !== generation) return;
    const connection = data.accounts;
    const cards = connection.edges.map(({ node }) => card(node));
    if (reset) replace(list, cards);
    else list.append(...cards);
    summary.textContent = t("accountsFound", { n: count(connection.totalCount) });
    after = connection.pageInfo.endCursor;
    more.hidden = !connection.pageInfo.hasNextPage;
    list.setAttribute("aria-busy", "false");
  }
  let timer;
  search.addEventListener("input", () => {
    generation++; // a load already under way answers an older search: it must not end the busy state
    list.setAttribute("aria-busy", "true");
    clearTimeout(timer);
    timer = setTimeout(() => inBackground(load(true)), 250);
  });
  more.addEventListener("click", () => inBackground(load(false)));
  replace(main, h("h1", {}, t("accounts")), h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() }, field(t("searchAccounts"), search)), summary, list, more);
  await load(true);
}

async function jobsPage(main) {
  const body = h("tbody");
  async function load() {
    const jobs = (await gql(D.FailedJobs)).failedJobs;
    replace(
      body,
      jobs.length === 0
        ? h("tr", {}, h("td", { colspan: 5, class: "muted" }, t("noFailedJobs")))
        : jobs.map((job) =>
            h(
              "tr",
              { dataset: { job: job.id } },
              h("td", {}, job.task),
              h("td", { class: "num" }, job.attempts),
              h("td", {}, h("code", {}, job.lastError || "—")),
              h("td", {}, dateTime(job.createdAt)),
              h("td", {}, h("button", { type: "button", class: "secondary small", "aria-label": `${t("retry")} ${job.task} #${job.id}`, onclick: () => retry(job) }, t("retry"))),
            ),
          ),
    );
  }
  async function retry(job) {
    const result = (await gql(D.JobRetry, { input: { id: job.id } })).jobRetry;
    toast(result.errors.length ? result.errors[0].message : t("retried"));
    await load();
  }
  replace(main, h("h1", {}, t("failedJobs")), h("table", { class: "grid", id: "jobs" }, h("thead", {}, h("tr", {}, [t("task"), t("attempts"), t("lastError"), t("created"), ""].map((c) => h("th", { scope: "col" }, c)))), body));
  await load();
}
