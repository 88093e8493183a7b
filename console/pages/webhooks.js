// /account/webhooks: endpoints (ADMIN manages; FINANCE reads), the secret shown once, deliveries, retry.

import { gql } from "../api.js";
import { can } from "../app.js";
import * as D from "../documents.js";
import { field, h, nextId, replace, showErrors, toast } from "../dom.js";
import { dateTime } from "../format.js";
import { t } from "../i18n.js";
import { copyButton, roleNotice } from "./common.js";

const EVENTS = ["VOUCHER_ORDER_PLACED", "VOUCHER_ORDER_PDF_READY", "VOUCHER_ORDER_CANCELLED", "VOUCHER_REDEEMED", "VOUCHER_RELEASED", "VOUCHERS_EXPIRED", "DEPOSIT_SUCCEEDED", "BALANCE_LOW"];

export async function render(main) {
  if (!can.money()) return replace(main, h("h1", {}, t("webhooks")), roleNotice());
  const list = h("div", { id: "endpoints" });
  const secretBox = h("div", { class: "secret", id: "new-secret", hidden: true, role: "status" });

  function showSecret(secret) {
    replace(secretBox, h("p", {}, h("strong", {}, t("secretOnce"))), h("p", {}, h("code", { id: "secret-value" }, secret), " ", copyButton(secret, t("copySecret"))));
    secretBox.hidden = false;
  }

  async function act(document, input, key) {
    const result = (await gql(document, { input }))[key];
    if (result.errors.length) toast(result.errors[0].message);
    return result;
  }

  function endpointCard(endpoint) {
    const headingId = nextId("ep");
    const admin = can.admin();
    const deliveries = endpoint.deliveries.edges.map(({ node }) =>
      h(
        "tr",
        { dataset: { delivery: node.id, status: node.status } },
        h("td", {}, node.eventType),
        h("td", {}, h("span", { class: `pill d-${node.status}` }, t(`delivery.${node.status}`))),
        h("td", { class: "num" }, node.attempts),
        h("td", {}, node.lastStatusCode ?? "—", node.lastError ? h("span", { class: "muted" }, ` ${node.lastError}`) : ""),
        h("td", {}, dateTime(node.createdAt)),
        h("td", {}, admin && node.status !== "SUCCEEDED" ? h("button", { type: "button", class: "secondary small", "aria-label": `${t("retry")} ${node.eventType}`, onclick: async () => { await act(D.DeliveryRetry, { id: node.id }, "webhookDeliveryRetry"); await load(); } }, t("retry")) : ""),
      ),
    );
    const controls = admin
      ? h(
          "div",
          { class: "row" },
          h("button", { type: "button", class: "secondary small", onclick: async () => { await act(D.WebhookUpdate, { id: endpoint.id, enabled: !endpoint.enabled }, "webhookEndpointUpdate"); await load(); } }, endpoint.enabled ? t("disable") : t("enable")),
          h("button", { type: "button", class: "secondary small", onclick: async () => { await act(D.WebhookTest, { id: endpoint.id }, "webhookEndpointTest"); toast(t("testSent")); await load(); } }, t("sendTest")),
          h("button", { type: "button", class: "secondary small", onclick: async () => { const r = await act(D.WebhookRotate, { id: endpoint.id }, "webhookEndpointRotateSecret"); if (r.secret) showSecret(r.secret); } }, t("rotateSecret")),
          h("button", { type: "button", class: "danger small", onclick: async () => { if (window.confirm(t("deleteEndpointConfirm", { url: endpoint.url }))) { await act(D.WebhookDelete, { id: endpoint.id }, "webhookEndpointDelete"); await load(); } } }, t("delete")),
        )
      : null;
    return h(
      "article",
      { class: "card", "aria-labelledby": headingId },
      h("div", { class: "title" }, h("h2", { id: headingId }, h("code", {}, endpoint.url)), h("span", { class: `badge ${endpoint.enabled ? "o-ACTIVE" : "o-CANCELLED"}` }, endpoint.enabled ? t("enabled") : t("disabled"))),
      endpoint.description ? h("p", {}, endpoint.description) : null,
      endpoint.disabledReason ? h("p", { class: "notice" }, endpoint.disabledReason) : null,
      h("p", { class: "muted" }, endpoint.events.map((e) => t(`event.${e}`, {}, e)).join(", ")),
      controls,
      h("table", { class: "grid" }, h("caption", {}, t("deliveries")), h("thead", {}, h("tr", {}, [t("eventType"), t("status"), t("attempts"), t("lastAnswer"), t("created"), ""].map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, deliveries.length ? deliveries : h("tr", {}, h("td", { colspan: 6, class: "muted" }, t("noDeliveries"))))),
    );
  }

  async function load() {
    const endpoints = (await gql(D.Webhooks)).viewer.account.webhookEndpoints.edges;
    replace(list, endpoints.length ? endpoints.map(({ node }) => endpointCard(node)) : h("p", { class: "muted" }, t("noEndpoints")));
  }

  const parts = [h("h1", {}, t("webhooks")), h("p", { class: "muted" }, t("webhooksIntro"))];
  if (can.admin()) {
    const form = h("form", { class: "card", novalidate: true });
    const general = h("p", { class: "error", role: "alert", hidden: true });
    const url = h("input", { type: "url", name: "url", placeholder: "https://example.com/webhooks" });
    const description = h("input", { type: "text", name: "description", maxlength: "200" });
    const boxes = EVENTS.map((e) => {
      const id = nextId("ev");
      return h("div", { class: "check" }, h("input", { type: "checkbox", id, value: e, checked: true }), h("label", { for: id }, t(`event.${e}`, {}, e)));
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const events = [...form.querySelectorAll("input[type=checkbox]:checked")].map((b) => b.value);
      const result = (await gql(D.WebhookCreate, { input: { url: url.value.trim(), events, description: description.value.trim() || null } })).webhookEndpointCreate;
      if (result.errors.length) return showErrors(form, result.errors, general);
      showErrors(form, [], general);
      showSecret(result.secret);
      url.value = "";
      await load();
    });
    replace(form, h("h2", {}, t("addEndpoint")), general, field(t("url"), url, { name: "url" }), field(t("description"), description, { name: "description" }), h("fieldset", {}, h("legend", {}, t("events")), h("div", { class: "checks" }, boxes), h("p", { class: "error", hidden: true, dataset: { errorFor: "events" } })), h("button", { type: "submit" }, t("addEndpoint")));
    parts.push(form);
  }
  parts.push(secretBox, list);
  replace(main, parts);
  await load();
}
