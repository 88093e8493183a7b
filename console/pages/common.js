// Pieces several pages share.

import { state } from "../app.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";

// A non-partner account learns how to get the voucher feature.
export function partnerNotice() {
  return h(
    "div",
    { class: "notice", id: "partner-notice", role: "note" },
    h("h2", {}, t("notPartnerTitle")),
    h("p", {}, t("notPartnerText")),
    h("p", { class: "muted" }, t("notPartnerAccount", { id: state.account?.id || "" })),
  );
}

export function roleNotice(key = "roleCannot") {
  return h("p", { class: "notice", role: "note" }, t(key));
}

export function copyButton(text, label) {
  const idle = t("copy");
  const button = h("button", { type: "button", class: "secondary small", "aria-label": label }, idle);
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = t("copied");
    } catch {
      button.textContent = "!";
    }
    setTimeout(() => (button.textContent = idle), 1500);
  });
  return button;
}
