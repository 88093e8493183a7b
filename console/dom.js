// A tiny element builder: no innerHTML anywhere, so nothing from the API is ever parsed as markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value" || key === "checked" || key === "disabled" || key === "selected") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let uid = 0;
export const nextId = (prefix = "f") => `${prefix}-${++uid}`;

// A labelled control: the label names it; the error slot is tied to it by aria-describedby.
export function field(label, control, { hint, name } = {}) {
  const id = control.id || nextId();
  control.id = id;
  const error = h("p", { class: "error", id: `${id}-err`, hidden: true });
  if (name) error.dataset.errorFor = name;
  if (name) control.dataset.field = name;
  const described = [`${id}-err`];
  let hintEl = null;
  if (hint) {
    hintEl = h("p", { class: "hint", id: `${id}-hint` }, hint);
    described.push(`${id}-hint`);
  }
  control.setAttribute("aria-describedby", described.join(" "));
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hintEl, error);
}

// Shows each UserError on its field (`field` is ["input", "lines", "0", "quantity"]), the rest in `general`.
export function showErrors(form, errors, general, { focus = true } = {}) {
  for (const slot of form.querySelectorAll("[data-error-for]")) {
    slot.hidden = true;
    slot.textContent = "";
  }
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
  const rest = [];
  for (const error of errors) {
    const path = (error.field || []).filter((part) => part !== "input").join(".");
    const slot = path && form.querySelector(`[data-error-for="${CSS.escape(path)}"]`);
    if (slot) {
      slot.hidden = false;
      slot.textContent = slot.textContent ? `${slot.textContent} ${error.message}` : error.message;
      const control = form.querySelector(`[data-field="${CSS.escape(path)}"]`);
      if (control) control.setAttribute("aria-invalid", "true");
    } else rest.push(error.message);
  }
  if (general) {
    general.hidden = rest.length === 0;
    general.textContent = rest.join(" ");
  }
  const first = form.querySelector("[aria-invalid='true']");
  if (first && focus) first.focus();
}

export function toast(message) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.classList.add("shown");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.remove("shown"), 4000);
}
