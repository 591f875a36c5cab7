// The compare view: every method's map for the current class, small, each with its
// deletion and insertion AUC ("…" while the kernel computes them).

import { h, setPressed } from "./ui.js";
import { decodePanel } from "./decode.js";
import { colourLimit, tableFor, colorbarTicks } from "./colormap.js";
import { methodTitle, methodHint, formatAUC, panelStatus, compareSummary, tickLabels, outputTrait, mapOutput } from "./methods.js";
import { MapPainter } from "./paint.js";

/** Longest side of a panel's canvas, CSS pixels. */
const PANEL_SIZE = 188;

/**
 * @typedef {object} CompareHooks
 * @property {() => CanvasImageSource | null} image  the input image, decoded
 * @property {() => [number, number]} shape  (H, W) of the input
 */

export class CompareView {
  /**
   * @param {any} model
   * @param {HTMLElement} section  where the view goes (hidden while closed)
   * @param {HTMLElement} toggle  the button that opens and closes it
   * @param {CompareHooks} hooks
   */
  constructor(model, section, toggle, hooks) {
    this.model = model;
    this.section = section;
    this.toggle = toggle;
    this.hooks = hooks;
    this.painter = new MapPainter();
    /** @type {{source: HTMLCanvasElement, head: string, foot: string, lut: Uint8Array, ticks: string[]}[]} what a download draws */
    this.figure = [];
    this.summary = h("div", { class: "ow-section-title" });
    this.grid = h("div", { class: "ow-compare-grid" });
    const note = h(
      "div",
      { class: "ow-note" },
      "Deletion AUC: the class probability as the map's most important pixels are removed first (lower is better). ",
      "Insertion AUC: as they are restored onto the mask-value image (higher is better). Click a panel to show that method above.",
    );
    section.replaceChildren(this.summary, this.grid, note);
    this.onToggle = () => {
      model.set("compare", !model.get("compare"));
      model.save_changes();
    };
    toggle.addEventListener("click", this.onToggle);
    this.redraw = () => this.render();
    this.names = ["comparison_data", "compare", "colormap", "sequential_colormap", "opacity", "method", "colormaps", "percentile"];
    for (const name of this.names) model.on(`change:${name}`, this.redraw);
    this.render();
  }

  render() {
    const open = Boolean(this.model.get("compare"));
    setPressed(this.toggle, open);
    this.section.hidden = !open;
    if (!open) return;
    const state = this.model.get("comparison_data") || {};
    this.summary.textContent = compareSummary(state);
    this.section.dataset.status = state.status ?? "pending";
    this.figure = [];
    this.grid.replaceChildren(...(state.panels ?? []).map((panel) => this.card(panel)));
  }

  /** Whether the view is open (a download then saves all its panels). */
  get open() {
    return Boolean(this.model.get("compare")) && this.figure.length > 0;
  }

  /** @param {any} panel  one entry of comparison_data.panels */
  card(panel) {
    const m = this.model;
    const [height, width] = this.hooks.shape();
    const scale = PANEL_SIZE / Math.max(height, width);
    const ratio = typeof devicePixelRatio === "number" ? Math.min(devicePixelRatio, 2) : 1;
    const canvas = /** @type {HTMLCanvasElement} */ (
      h("canvas", { class: "ow-compare-canvas", width: Math.round(width * scale * ratio), height: Math.round(height * scale * ratio) })
    );
    const map = decodePanel(panel);
    const p = m.get("percentile");
    const percentile = typeof p === "number" && p > 0 && p <= 100 ? p : null;
    const lut = panel.signed ? tableFor(m.get("colormaps"), m.get("colormap")) : tableFor(m.get("sequential_colormaps"), m.get("sequential_colormap"));
    const layer = map && {
      values: map.values,
      height: map.height,
      width: map.width,
      limit: colourLimit(map.values, Boolean(panel.signed), percentile),
      signed: Boolean(panel.signed),
      lut,
      opacity: m.get("opacity"),
      smooth: panel.upsampling !== "nearest" && map.width === width,
    };
    this.painter.paint(canvas, this.hooks.image(), layer);
    const trait = outputTrait(panel.method);
    const output = mapOutput(panel.method, null, trait ? m.get(trait) : undefined);
    const ticks = layer ? tickLabels(colorbarTicks(layer.limit, layer.signed), panel.method, output) : [];
    this.figure.push({ source: canvas, head: methodTitle(panel.method), lut, ticks,
      foot: `deletion ${formatAUC(panel.deletion_auc)} \u2193   insertion ${formatAUC(panel.insertion_auc)} \u2191` });
    const status = panelStatus(panel);
    const auc = (label, value, hint, arrow) =>
      h("span", { class: "ow-auc", title: hint }, `${label} `, h("b", {}, formatAUC(value)), h("span", { class: "ow-auc-arrow" }, arrow));
    return h(
      "div",
      {
        class: "ow-compare-card" + (panel.method === m.get("method") ? " ow-compare-current" : ""),
        "data-method": panel.method,
        "data-state": status.state,
        role: "button",
        tabindex: "0",
        title: `${methodHint(panel.method)}. Click to show it above.`,
        onclick: () => {
          m.set("method", panel.method);
          m.save_changes();
        },
      },
      h("div", { class: "ow-compare-title" }, methodTitle(panel.method)),
      h("div", { class: "ow-compare-stage", style: { aspectRatio: `${width} / ${height}` } }, canvas, status.text ? h("div", { class: "ow-compare-status" }, status.text) : null),
      h(
        "div",
        { class: "ow-aucs" },
        auc("deletion", panel.deletion_auc, "Deletion AUC: lower is better", "\u2193"),
        auc("insertion", panel.insertion_auc, "Insertion AUC: higher is better", "\u2191"),
      ),
    );
  }

  dispose() {
    for (const name of this.names) this.model.off(`change:${name}`, this.redraw);
    this.toggle.removeEventListener("click", this.onToggle);
  }
}
