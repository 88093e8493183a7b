// /signin and /signup.

import { gql } from "../api.js";
import { signedIn } from "../app.js";
import * as D from "../documents.js";
import { field, h, replace, showErrors } from "../dom.js";
import { LANGUAGES, language, t } from "../i18n.js";

function safeNext(query) {
  const next = query.get("next") || "";
  return next.startsWith("/") && !next.startsWith("//") ? next : null;
}

export async function render(main, { page, query }) {
  const next = safeNext(query);
  const general = h("p", { class: "error", role: "alert", hidden: true });
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", {
    type: "password",
    name: "password",
    autocomplete: page === "signup" ? "new-password" : "current-password",
    required: true,
  });
  const submit = h("button", { type: "submit" }, page === "signup" ? t("createAccount") : t("signIn"));
  const form = h("form", { class: "card narrow", novalidate: true });
  const fields = [field(t("email"), email, { name: "email" }), field(t("password"), password, { name: "password" })];
  let accountName;
  let locale;
  if (page === "signup") {
    accountName = h("input", { type: "text", name: "accountName", autocomplete: "organization", required: true });
    locale = h(
      "select",
      { name: "locale" },
      LANGUAGES.map(([code, name]) => h("option", { value: code, selected: code === language() }, name)),
    );
    fields.push(
      field(t("accountName"), accountName, { name: "accountName" }),
      field(t("accountLanguage"), locale, { name: "locale" }),
    );
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      if (page === "signup") {
        const input = { email: email.value, password: password.value, accountName: accountName.value, locale: locale.value };
        const created = (await gql(D.SignUp, { input })).signUp;
        if (created.errors.length) return showErrors(form, created.errors, general);
      }
      const result = (await gql(D.SignIn, { input: { email: email.value, password: password.value } })).signIn;
      if (result.errors.length) return showErrors(form, result.errors, general);
      await signedIn(result.token, next);
    } catch (error) {
      showErrors(form, [{ message: error.message }], general);
    } finally {
      submit.disabled = false;
    }
  });
  replace(form, h("h1", {}, page === "signup" ? t("signUpTitle") : t("signInTitle")), general, fields, submit);
  const other =
    page === "signup"
      ? h("p", {}, `${t("haveAccount")} `, h("a", { href: "/signin" }, t("signIn")))
      : h("p", {}, `${t("newHere")} `, h("a", { href: "/signup" }, t("signUp")));
  replace(main, form, h("div", { class: "narrow" }, other));
}
