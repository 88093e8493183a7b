// Amounts and dates for the console's language, by the browser's Intl.

import { language } from "./i18n.js";

const TAGS = { en: "en-US", de: "de-DE", fr: "fr-FR" };
const tag = () => TAGS[language()] || "en-US";

// Amounts arrive as exact decimal strings; they are only displayed here, never computed with.
export function money(value) {
  if (!value) return "—";
  return new Intl.NumberFormat(tag(), { style: "currency", currency: value.currencyCode }).format(Number(value.amount));
}

export function dateTime(iso) {
  if (!iso) return "—";
  return new Intl.DateTimeFormat(tag(), { dateStyle: "medium", timeStyle: "short" }).format(new Date(iso));
}

export function day(iso) {
  if (!iso) return "—";
  return new Intl.DateTimeFormat(tag(), { dateStyle: "medium" }).format(new Date(iso));
}

export function count(n) {
  return new Intl.NumberFormat(tag()).format(n);
}
