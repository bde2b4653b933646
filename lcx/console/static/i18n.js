// Translation: one catalog per language (strings.<lang>.js), chosen from the browser's
// language unless the agent picked one (kept in localStorage).
import en from "./strings.en.js";
import el from "./strings.el.js";

export const CATALOGS = { en, el };
const STORAGE_KEY = "lcx.language";
let current = "en";

/** The language to start with: the saved choice, else the browser's, else English. */
export function initialLanguage() {
  const saved = localStorage.getItem(STORAGE_KEY);
  if (saved && CATALOGS[saved]) return saved;
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (CATALOGS[base]) return base;
  }
  return "en";
}

/** The current language code. */
export function language() {
  return current;
}

/** A translated string; {name} placeholders are replaced from vars. */
export function t(key, vars = {}) {
  const text = CATALOGS[current][key] ?? CATALOGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

/** Switch language, remember it and translate the static markup. */
export function setLanguage(code, remember = false) {
  current = CATALOGS[code] ? code : "en";
  if (remember) localStorage.setItem(STORAGE_KEY, current);
  document.documentElement.lang = current;
  for (const element of document.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of document.querySelectorAll("[data-i18n-label]")) {
    element.setAttribute("aria-label", t(element.dataset.i18nLabel));
  }
  for (const element of document.querySelectorAll("[data-i18n-placeholder]")) {
    element.setAttribute("placeholder", t(element.dataset.i18nPlaceholder));
  }
}
