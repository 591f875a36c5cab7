// DOM building blocks of the widget: layout, tabs, score lists. No state, no maths.

import { methodTitle, methodHint, formatScore } from "./methods.js";

/** What the banner says when no kernel answers (a saved page, a closed notebook). */
export const KERNELLESS_TEXT = "No kernel is running: these are the saved maps. Changing parameters needs a running kernel.";

/** The read-out's text while the pointer is not over the image. */
export const READOUT_HINT = "Hover the image to read values; drag to move the mask.";

/**
 * Create an element: h("div", {class: "x", onclick: fn}, child, "text").
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...(Node | string | null | undefined | false)} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "style" && typeof value === "object") Object.assign(node.style, value);
    else if (key in node && key !== "list" && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child);
  }
  return node;
}

/**
 * The skeleton; returns the nodes the view fills in.
 * @param {HTMLElement} el
 */
export function buildLayout(el) {
  const refs = {
    title: h("span", { class: "ow-title" }, "Occlusion sensitivity"),
    modelName: h("span", { class: "ow-model" }),
    status: h("span", { class: "ow-status", role: "status" }),
    progress: h("div", { class: "ow-progress-bar" }),
    stop: /** @type {HTMLButtonElement} */ (h("button", { class: "ow-button ow-stop", type: "button", title: "Stop the computation" }, "Stop")),
    methods: h("div", { class: "ow-methods", role: "radiogroup", "aria-label": "Method" }),
    compareToggle: h("button", { class: "ow-toggle", type: "button", "data-view": "compare", "aria-pressed": "false", title: "The four methods side by side for the current class, with deletion / insertion AUCs" }, "Compare methods"),
    layersToggle: h("button", { class: "ow-toggle", type: "button", "data-view": "layers", "aria-pressed": "false", title: "The strongest channels of a conv layer for this image" }, "Layer activations"),
    tabs: h("div", { class: "ow-tabs", role: "tablist" }),
    canvas: /** @type {HTMLCanvasElement} */ (h("canvas", { class: "ow-canvas" })),
    mask: h("div", { class: "ow-mask", title: "Drag the mask" }, h("div", { class: "ow-mask-cross" })),
    readout: h("div", { class: "ow-readout" }, READOUT_HINT),
    barTop: h("div", { class: "ow-colorbar-end" }, "supports"),
    barBottom: h("div", { class: "ow-colorbar-end" }, "opposes"),
    barGradient: h("div", { class: "ow-colorbar-gradient" }),
    barTicks: h("div", { class: "ow-colorbar-ticks" }),
    barCaption: h("div", { class: "ow-colorbar-caption" }),
    previewCanvas: /** @type {HTMLCanvasElement} */ (h("canvas", { class: "ow-preview-canvas", width: 224, height: 224 })),
    previewSummary: h("div", { class: "ow-preview-summary" }),
    previewBase: h("ol", { class: "ow-scores" }),
    previewMasked: h("ol", { class: "ow-scores" }),
    worst: /** @type {HTMLButtonElement} */ (h("button", { class: "ow-button", type: "button", title: "Move the mask to where it lowers the current class most" }, "Worst spot")),
    download: h("button", { class: "ow-button", type: "button", title: "Download the image with the heatmap as PNG" }, "Download PNG"),
    controls: h("div", { class: "ow-controls" }),
    error: h("div", { class: "ow-error", role: "alert" }),
    banner: h("div", { class: "ow-banner", role: "status", hidden: true }, KERNELLESS_TEXT),
    notice: h("div", { class: "ow-notice", hidden: true }),
    compare: h("section", { class: "ow-compare ow-section", hidden: true }),
    layers: h("section", { class: "ow-layers ow-section", hidden: true }),
  };
  refs.stage = h("div", { class: "ow-stage" }, refs.canvas, refs.mask);
  refs.left = h("div", { class: "ow-left" }, refs.stage, refs.readout, h("div", { class: "ow-actions" }, refs.worst, refs.download));
  refs.colorbar = h("div", { class: "ow-bar-column" });
  const header = h(
    "div",
    { class: "ow-header" },
    h("div", { class: "ow-heading" }, refs.title, refs.modelName),
    h("div", { class: "ow-run" }, refs.status, h("div", { class: "ow-progress" }, refs.progress), refs.stop),
  );
  const toolbar = h(
    "div",
    { class: "ow-toolbar" },
    h("div", { class: "ow-method-group" }, h("span", { class: "ow-toolbar-label" }, "Method"), refs.methods),
    h("div", { class: "ow-views" }, refs.compareToggle, refs.layersToggle),
  );
  const colorbar = h(
    "div",
    { class: "ow-colorbar" },
    refs.barTop,
    h("div", { class: "ow-colorbar-body" }, refs.barGradient, refs.barTicks),
    refs.barBottom,
  );
  refs.colorbar.append(colorbar, refs.barCaption);
  refs.preview = h(
    "div",
    { class: "ow-preview" },
    h("div", { class: "ow-section-title" }, "Mask preview"),
    refs.previewCanvas,
    refs.previewSummary,
    h(
      "div",
      { class: "ow-score-columns" },
      h("div", {}, h("div", { class: "ow-score-head" }, "Unoccluded"), refs.previewBase),
      h("div", {}, h("div", { class: "ow-score-head" }, "With mask"), refs.previewMasked),
    ),
  );
  const main = h("div", { class: "ow-main" }, refs.left, refs.colorbar, refs.preview);
  refs.root = h("div", { class: "ow-root" }, header, refs.banner, refs.notice, toolbar, refs.tabs, main, refs.error, refs.compare, refs.layers, refs.controls);
  el.replaceChildren(refs.root);
  return refs;
}

/**
 * The method selector: one button per offered method, the current one pressed.
 * @param {HTMLElement} container
 * @param {string} current
 * @param {{method: string, enabled: boolean}[]} offered  (methods.js: offeredMethods)
 * @param {(method: string) => void} onSelect
 */
export function renderMethods(container, current, offered, onSelect) {
  container.replaceChildren(
    ...offered.map(({ method: m, enabled }) =>
      h(
        "button",
        {
          class: "ow-method" + (m === current ? " ow-method-active" : ""),
          type: "button",
          role: "radio",
          "aria-checked": m === current ? "true" : "false",
          "data-method": m,
          disabled: !enabled,
          title: enabled ? methodHint(m) : `${methodHint(m)} (needs a running kernel)`,
          onclick: () => onSelect(m),
        },
        methodTitle(m),
      ),
    ),
  );
}

/**
 * A toggle button's pressed state.
 * @param {HTMLElement} button
 * @param {boolean} on
 */
export function setPressed(button, on) {
  button.setAttribute("aria-pressed", on ? "true" : "false");
  button.classList.toggle("ow-toggle-on", on);
}

/**
 * One tab per class: name and unoccluded score (see methods.js: tabScores).
 * @param {HTMLElement} container
 * @param {{id: number, name: string, score: number}[]} classes
 * @param {number} selected
 * @param {{text: string, title: string}[]} scores
 * @param {(index: number) => void} onSelect
 */
export function renderTabs(container, classes, selected, scores, onSelect) {
  // Same classes: update the tabs in place, so a click is never lost to a re-render (previews
  // arrive many times a second while the mask is dragged).
  const signature = JSON.stringify(classes.map((c) => [c.id, c.name]));
  if (container.dataset.signature === signature) {
    [...container.children].forEach((tab, i) => {
      tab.classList.toggle("ow-tab-active", i === selected);
      tab.setAttribute("aria-selected", i === selected ? "true" : "false");
      tab.setAttribute("title", scores[i]?.title ?? "");
      const score = tab.querySelector(".ow-tab-score");
      if (score) score.textContent = scores[i]?.text ?? "";
    });
    return;
  }
  container.dataset.signature = signature;
  container.replaceChildren(
    ...classes.map((c, i) =>
      h(
        "button",
        {
          class: "ow-tab" + (i === selected ? " ow-tab-active" : ""),
          role: "tab",
          type: "button",
          "aria-selected": i === selected ? "true" : "false",
          "data-index": String(i),
          title: scores[i]?.title ?? "",
          onclick: () => onSelect(i),
        },
        h("span", { class: "ow-tab-name" }, c.name),
        h("span", { class: "ow-tab-score" }, scores[i]?.text ?? ""),
      ),
    ),
  );
}

/**
 * A ranked score list with bars; the class `highlight` is marked.
 * @param {HTMLElement} list
 * @param {{id: number, name: string, score: number}[]} scores
 * @param {number} highlight
 * @param {string} output
 */
export function renderScores(list, scores, highlight, output) {
  const top = Math.max(1e-12, ...scores.map((s) => Math.abs(s.score)));
  list.replaceChildren(
    ...scores.map((s) =>
      h(
        "li",
        { class: "ow-score" + (s.id === highlight ? " ow-score-current" : ""), "data-id": String(s.id) },
        h("span", { class: "ow-score-name", title: s.name }, s.name),
        h("span", { class: "ow-score-value" }, formatScore(s.score, output)),
        h("span", { class: "ow-score-bar", style: { width: `${(Math.abs(s.score) / top) * 100}%` } }),
      ),
    ),
  );
}

/**
 * Fill a layer dropdown: "auto" (the default layer, value ""), the layers offered, and the
 * current value when it is not among them (set from Python).
 * @param {HTMLSelectElement} select
 * @param {{layers?: {name: string, shape: number[], type: string}[], default?: string | null}} data  the `layer_data` trait
 * @param {string | null} current  the trait's value (null: auto)
 */
export function renderLayerOptions(select, data, current) {
  const layers = data?.layers ?? [];
  const signature = JSON.stringify([layers.map((l) => l.name), data?.default ?? null, current ?? null]);
  if (select.dataset.signature === signature) return; // unchanged: keep an open dropdown open
  select.dataset.signature = signature;
  const shape = (s) => (s.length === 3 ? `${s[0]}\u00d7${s[1]}\u00d7${s[2]}` : s.join("\u00d7"));
  const auto = h("option", { value: "" }, data?.default ? `auto (${data.default})` : "auto (last spatial layer)");
  const options = layers.map((l) => h("option", { value: l.name, title: l.type }, `${l.name} \u00b7 ${shape(l.shape)}`));
  const known = current === null || current === undefined || layers.some((l) => l.name === current);
  select.replaceChildren(auto, ...options, ...(known ? [] : [h("option", { value: current }, current)]));
  select.value = current ?? "";
}
