// /account/users and /account/api-keys (ADMIN).

import { gql } from "../api.js";
import { can } from "../app.js";
import * as D from "../documents.js";
import { field, h, replace, showErrors } from "../dom.js";
import { dateTime } from "../format.js";
import { t } from "../i18n.js";
import { copyButton, roleNotice } from "./common.js";

const ROLES = ["ADMIN", "FINANCE", "MEMBER"];

export async function render(main, { page }) {
  return page === "account_users" ? usersPage(main) : keysPage(main);
}

async function usersPage(main) {
  const body = h("tbody");
  async function load() {
    const users = (await gql(D.Users)).viewer.account.users.edges;
    replace(body, users.map(({ node }) => h("tr", {}, h("td", {}, node.email), h("td", {}, t(`role.${node.role}`)), h("td", {}, dateTime(node.createdAt)))));
  }
  const table = h("table", { class: "grid", id: "users" }, h("thead", {}, h("tr", {}, [t("email"), t("roleLabel"), t("created")].map((c) => h("th", { scope: "col" }, c)))), body);
  const parts = [h("h1", {}, t("users")), h("p", { class: "muted" }, t("rolesExplained"))];
  if (can.admin()) {
    const form = h("form", { class: "card", novalidate: true });
    const general = h("p", { class: "error", role: "alert", hidden: true });
    const email = h("input", { type: "email", name: "email", autocomplete: "off" });
    const password = h("input", { type: "password", name: "password", autocomplete: "new-password" });
    const role = h("select", { name: "role" }, ROLES.map((r) => h("option", { value: r, selected: r === "MEMBER" }, t(`role.${r}`))));
    const done = h("p", { class: "ok", role: "status" });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      done.textContent = "";
      const result = (await gql(D.UserCreate, { input: { email: email.value, password: password.value, role: role.value } })).userCreate;
      if (result.errors.length) return showErrors(form, result.errors, general);
      showErrors(form, [], general);
      done.textContent = t("userAdded", { email: result.user.email });
      email.value = "";
      password.value = "";
      await load();
    });
    replace(form, h("h2", {}, t("addUser")), general, h("div", { class: "row" }, field(t("email"), email, { name: "email" }), field(t("initialPassword"), password, { name: "password" }), field(t("roleLabel"), role, { name: "role" })), h("button", { type: "submit" }, t("addUser")), done);
    parts.push(form);
  } else parts.push(roleNotice("adminOnly"));
  parts.push(table);
  replace(main, parts);
  await load();
}

async function keysPage(main) {
  if (!can.admin()) return replace(main, h("h1", {}, t("apiKeys")), roleNotice("adminOnly"));
  const body = h("tbody");
  const secretBox = h("div", { class: "secret", id: "new-secret", hidden: true, role: "status" });
  async function load() {
    const keys = (await gql(D.ApiKeys)).viewer.account.apiKeys.edges;
    replace(
      body,
      keys.map(({ node }) =>
        h(
          "tr",
          { dataset: { key: node.name } },
          h("td", {}, node.name),
          h("td", {}, t(`channel.${node.channel}`)),
          h("td", {}, h("code", {}, `${node.prefix}…`)),
          h("td", {}, dateTime(node.createdAt)),
          h("td", {}, node.lastUsedAt ? dateTime(node.lastUsedAt) : "—"),
          h(
            "td",
            {},
            node.revokedAt
              ? h("span", { class: "muted" }, `${t("revoked")} ${dateTime(node.revokedAt)}`)
              : h("button", { type: "button", class: "danger small", "aria-label": `${t("revoke")} ${node.name}`, onclick: () => revoke(node) }, t("revoke")),
          ),
        ),
      ),
    );
  }
  async function revoke(node) {
    if (!window.confirm(t("revokeConfirm", { name: node.name }))) return;
    const result = (await gql(D.ApiKeyRevoke, { input: { id: node.id } })).apiKeyRevoke;
    if (result.errors.length) return alert(result.errors[0].message);
    await load();
  }
  const form = h("form", { class: "card", novalidate: true });
  const general = h("p", { class: "error", role: "alert", hidden: true });
  const name = h("input", { type: "text", name: "name", maxlength: "100" });
  const channel = h("select", { name: "channel" }, ["API", "AZURE_KEY_VAULT"].map((c) => h("option", { value: c }, t(`channel.${c}`))));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = (await gql(D.ApiKeyCreate, { input: { name: name.value, channel: channel.value } })).apiKeyCreate;
    if (result.errors.length) return showErrors(form, result.errors, general);
    showErrors(form, [], general);
    // The secret exists only in this answer: shown once, never stored by the console.
    replace(secretBox, h("p", {}, h("strong", {}, t("secretOnce"))), h("p", {}, h("code", { id: "secret-value" }, result.secret), " ", copyButton(result.secret, t("copySecret"))));
    secretBox.hidden = false;
    name.value = "";
    await load();
  });
  replace(form, h("h2", {}, t("createKey")), general, h("div", { class: "row" }, field(t("name"), name, { name: "name" }), field(t("channel"), channel, { name: "channel", hint: t("channelHint") })), h("button", { type: "submit" }, t("createKey")));
  replace(
    main,
    h("h1", {}, t("apiKeys")),
    form,
    secretBox,
    h("table", { class: "grid", id: "api-keys" }, h("thead", {}, h("tr", {}, [t("name"), t("channel"), t("prefix"), t("created"), t("lastUsed"), ""].map((c) => h("th", { scope: "col" }, c)))), body),
  );
  await load();
}
