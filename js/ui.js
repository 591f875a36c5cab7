// DOM building blocks of the widget: layout, tabs, score lists. No state, no maths.

import { formatValue } from "./colormap.js";

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
 * A score as the model reports it: probabilities in percent, logits as numbers.
 * @param {number} value
 * @param {string} output
 */
export function formatScore(value, output) {
  if (output === "probability") return `${(value * 100).toFixed(value >= 0.995 || value < 0.1 ? 1 : 0)}%`;
  return value.toFixed(2);
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
    stop: h("button", { class: "ow-button ow-stop", type: "button", title: "Stop the sweep" }, "Stop"),
    tabs: h("div", { class: "ow-tabs", role: "tablist" }),
    canvas: /** @type {HTMLCanvasElement} */ (h("canvas", { class: "ow-canvas" })),
    mask: h("div", { class: "ow-mask", title: "Drag the mask" }, h("div", { class: "ow-mask-cross" })),
    readout: h("div", { class: "ow-readout" }, "Hover the image to read values; drag to move the mask."),
    barGradient: h("div", { class: "ow-colorbar-gradient" }),
    barTicks: h("div", { class: "ow-colorbar-ticks" }),
    barCaption: h("div", { class: "ow-colorbar-caption" }),
    previewCanvas: /** @type {HTMLCanvasElement} */ (h("canvas", { class: "ow-preview-canvas", width: 224, height: 224 })),
    previewSummary: h("div", { class: "ow-preview-summary" }),
    previewBase: h("ol", { class: "ow-scores" }),
    previewMasked: h("ol", { class: "ow-scores" }),
    worst: h("button", { class: "ow-button", type: "button", title: "Move the mask to where it lowers the current class most" }, "Worst spot"),
    download: h("button", { class: "ow-button", type: "button", title: "Download the image with the heatmap as PNG" }, "Download PNG"),
    controls: h("div", { class: "ow-controls" }),
    error: h("div", { class: "ow-error", role: "alert" }),
  };
  refs.stage = h("div", { class: "ow-stage" }, refs.canvas, refs.mask);
  const header = h(
    "div",
    { class: "ow-header" },
    h("div", { class: "ow-heading" }, refs.title, refs.modelName),
    h("div", { class: "ow-run" }, refs.status, h("div", { class: "ow-progress" }, refs.progress), refs.stop),
  );
  const colorbar = h(
    "div",
    { class: "ow-colorbar" },
    h("div", { class: "ow-colorbar-end" }, "supports"),
    h("div", { class: "ow-colorbar-body" }, refs.barGradient, refs.barTicks),
    h("div", { class: "ow-colorbar-end" }, "opposes"),
  );
  const preview = h(
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
  const main = h(
    "div",
    { class: "ow-main" },
    h("div", { class: "ow-left" }, refs.stage, refs.readout, h("div", { class: "ow-actions" }, refs.worst, refs.download)),
    h("div", { class: "ow-bar-column" }, colorbar, refs.barCaption),
    preview,
  );
  refs.root = h("div", { class: "ow-root" }, header, refs.tabs, main, refs.error, refs.controls);
  el.replaceChildren(refs.root);
  return refs;
}

/**
 * One tab per class: name and unoccluded score.
 * @param {HTMLElement} container
 * @param {{id: number, name: string, score: number}[]} classes
 * @param {number} selected
 * @param {string} output
 * @param {(index: number) => void} onSelect
 */
export function renderTabs(container, classes, selected, output, onSelect) {
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
          title: `class ${c.id}`,
          onclick: () => onSelect(i),
        },
        h("span", { class: "ow-tab-name" }, c.name),
        h("span", { class: "ow-tab-score" }, formatScore(c.score, output)),
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
 * "tabby: 81% → 12% (−0.69)" for the current class.
 * @param {{id: number, base: number, occluded: number} | undefined} target
 * @param {string} name
 * @param {string} output
 */
export function targetSummary(target, name, output) {
  if (!target) return "";
  const drop = target.base - target.occluded;
  return `${name}: ${formatScore(target.base, output)} \u2192 ${formatScore(target.occluded, output)} (drop ${formatValue(drop)})`;
}
