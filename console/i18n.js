// The console's words in English, German and French; the account's locale chooses (switchable).

import { de } from "./i18n/de.js";
import { en } from "./i18n/en.js";
import { fr } from "./i18n/fr.js";

const STRINGS = { en, de, fr };
export const LANGUAGES = [
  ["en", "English"],
  ["de", "Deutsch"],
  ["fr", "Français"],
];
const PREFERENCE = "vouchsafe.language";

function initial() {
  const remembered = localStorage.getItem(PREFERENCE);
  if (remembered && STRINGS[remembered]) return remembered;
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const code = tag.slice(0, 2).toLowerCase();
    if (STRINGS[code]) return code;
  }
  return "en";
}

let current = initial();

export function language() {
  return current;
}

// `remember`: a choice of this browser's (signed out, or a user who may not change the account's).
export function setLanguage(code, { remember = false } = {}) {
  if (!STRINGS[code]) return;
  current = code;
  if (remember) localStorage.setItem(PREFERENCE, code);
  else if (localStorage.getItem(PREFERENCE) && localStorage.getItem(PREFERENCE) !== code) localStorage.removeItem(PREFERENCE);
  document.documentElement.lang = code;
}

export function t(key, vars = {}, fallback) {
  if (String(vars.n) === "1" && (STRINGS[current][`${key}.one`] ?? en[`${key}.one`])) key = `${key}.one`;
  const text = STRINGS[current][key] ?? en[key] ?? fallback ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}
