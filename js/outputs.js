// A segmenter's or detector's output over the image: the predicted mask (legend, toggle) or the boxes
// (click one to explain it), a "Region" mode (or shift-drag) that adds a region target, and the
// occluded outputs drawn over the mask preview. The trait changes are the ones the kernel documents.

import { h } from "./ui.js";
import { toBytes } from "./decode.js";
import { boxToPercent, clientToImage } from "./geometry.js";
import { visibleDetections, detectionSpec, tabOf, addTarget, dragRegion, paintMask } from "./targets.js";

/** Opacity of the mask overlay (0..255). */
const MASK_ALPHA = 110;

/** @param {any} c */
const css = (c) => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;

export class OutputsOverlay {
  /**
   * @param {any} model
   * @param {any} ui  the layout (ui.js: buildLayout): stage, left
   * @param {{shape: () => [number, number]}} hooks
   */
  constructor(model, ui, hooks) {
    this.model = model;
    this.ui = ui;
    this.hooks = hooks;
    this.regionMode = false;
    /** @type {{x: number, y: number} | null} */ this.dragStart = null;
    this.maskCanvas = /** @type {HTMLCanvasElement} */ (h("canvas", { class: "ow-seg-overlay" }));
    this.boxes = h("div", { class: "ow-boxes" });
    this.region = h("div", { class: "ow-region", hidden: true });
    this.toggle = h("button", { class: "ow-toggle ow-outputs-toggle", type: "button", "aria-pressed": "true",
      onclick: () => this.set("show_outputs", !model.get("show_outputs")) });
    this.regionButton = h("button", { class: "ow-toggle ow-region-mode", type: "button", "aria-pressed": "false",
      title: "Drag a box on the image to explain the current class in that region (or shift-drag)", onclick: () => this.setRegionMode(!this.regionMode) }, "Region");
    this.legend = h("div", { class: "ow-legend" });
    this.bar = h("div", { class: "ow-outputs-bar", hidden: true }, this.toggle, this.regionButton, this.legend);
    ui.stage.append(this.maskCanvas, this.boxes, this.region);
    ui.stage.after(this.bar);
    this.listeners = [];
    for (const name of ["output_kind", "detections", "segmentation", "show_outputs", "classes", "selected", "min_score"]) {
      const fn = () => this.render();
      model.on(`change:${name}`, fn);
      this.listeners.push([`change:${name}`, fn]);
    }
    this.onDown = (e) => this.pointerDown(e);
    this.onMove = (e) => this.pointerMove(e);
    this.onUp = (e) => this.pointerUp(e);
    // Capture: a region drag must not also move the occlusion mask (the view's own stage listener).
    ui.stage.addEventListener("pointerdown", this.onDown, { capture: true });
    ui.stage.addEventListener("pointermove", this.onMove, { capture: true });
    ui.stage.addEventListener("pointerup", this.onUp, { capture: true });
    this.render();
  }

  set(name, value) {
    this.model.set(name, value);
    this.model.save_changes();
  }

  /** @param {{target_objects: any[], selected: number} | null} change */
  apply(change) {
    if (!change) return;
    this.model.set("target_objects", change.target_objects);
    this.model.set("selected", change.selected);
    this.model.save_changes();
  }

  setRegionMode(on) {
    this.regionMode = on;
    this.regionButton.setAttribute("aria-pressed", String(on));
    this.ui.stage.classList.toggle("ow-region-active", on);
  }

  render() {
    const m = this.model;
    const kind = m.get("output_kind") || "classification";
    const show = m.get("show_outputs") !== false;
    this.bar.hidden = kind === "classification";
    this.regionButton.hidden = kind !== "segmentation";
    this.toggle.textContent = kind === "detection" ? "Boxes" : "Mask";
    this.toggle.setAttribute("aria-pressed", String(show));
    this.ui.stage.dataset.outputs = kind;
    this.renderMask(kind === "segmentation" && show);
    this.renderBoxes(kind === "detection" && show);
  }

  renderMask(show) {
    const seg = this.model.get("segmentation") || {};
    const legend = seg.legend || [];
    this.legend.replaceChildren(...legend.map((e) => h("span", { class: "ow-legend-item", "data-id": String(e.id) },
      h("span", { class: "ow-swatch", style: { background: e.id === 0 ? "transparent" : css(e.color) } }),
      `${e.name} ${Math.round(e.fraction * 100)}%`)));
    this.maskCanvas.hidden = !show || !seg.shape;
    if (this.maskCanvas.hidden) return;
    const [H, W] = seg.shape;
    this.maskCanvas.width = W;
    this.maskCanvas.height = H;
    const ctx = this.maskCanvas.getContext("2d");
    if (!ctx) return;
    const pixels = ctx.createImageData(W, H);
    paintMask(toBytes(seg.data), legend, MASK_ALPHA, pixels.data);
    ctx.putImageData(pixels, 0, 0);
  }

  renderBoxes(show) {
    const m = this.model;
    const shape = this.hooks.shape();
    const classes = m.get("classes") || [];
    const selected = m.get("selected") || 0;
    const items = show ? visibleDetections(m.get("detections"), m.get("min_score")) : [];
    this.boxes.replaceChildren(...items.map(({ det, index }) => {
      const [x0, y0, x1, y1] = det.box;
      const p = boxToPercent([y0, x0, y1, x1], shape);
      const tab = tabOf(classes, det);
      return h("div", {
        class: "ow-box" + (tab >= 0 ? " ow-box-explained" : "") + (tab >= 0 && tab === selected ? " ow-box-selected" : ""),
        "data-index": String(index), "data-tab": String(tab), title: `${det.name}: click to explain this object`,
        style: { left: `${p.left}%`, top: `${p.top}%`, width: `${p.width}%`, height: `${p.height}%` },
        onpointerdown: (/** @type {PointerEvent} */ e) => e.stopPropagation(),
        onclick: () => this.clickBox(det),
      }, h("span", { class: "ow-box-label" }, det.name));
    }));
  }

  /** A click on a box: its tab is selected, or its target added as a new tab. */
  clickBox(det) {
    const classes = this.model.get("classes") || [];
    const tab = tabOf(classes, det);
    if (tab >= 0) this.set("selected", tab);
    else this.apply(addTarget(classes, detectionSpec(det)));
  }

  toImage(e) {
    const shape = this.hooks.shape();
    return clientToImage(this.ui.stage.getBoundingClientRect(), shape[1], shape[0], e.clientX, e.clientY);
  }

  pointerDown(e) {
    if (this.model.get("output_kind") !== "segmentation" || e.button !== 0 || !(this.regionMode || e.shiftKey)) return;
    e.stopPropagation();
    e.preventDefault();
    this.dragStart = this.toImage(e);
    this.ui.stage.setPointerCapture?.(e.pointerId);
    this.drawRegion(this.dragStart);
  }

  pointerMove(e) {
    if (!this.dragStart) return;
    e.stopPropagation();
    this.drawRegion(this.toImage(e));
  }

  pointerUp(e) {
    if (!this.dragStart) return;
    e.stopPropagation();
    const box = dragRegion(this.dragStart, this.toImage(e), this.hooks.shape());
    this.dragStart = null;
    this.region.hidden = true;
    this.ui.stage.releasePointerCapture?.(e.pointerId);
    const classes = this.model.get("classes") || [];
    const current = classes[this.model.get("selected") || 0]?.target;
    if (box && current) this.apply(addTarget(classes, { kind: "segmentation", label: current.label, region: box }));
  }

  drawRegion(p) {
    const box = this.dragStart && dragRegion(this.dragStart, p, this.hooks.shape());
    this.region.hidden = !box;
    if (!box) return;
    const q = boxToPercent([box[1], box[0], box[3], box[2]], this.hooks.shape());
    Object.assign(this.region.style, { left: `${q.left}%`, top: `${q.top}%`, width: `${q.width}%`, height: `${q.height}%` });
  }

  /**
   * The occluded outputs of a preview answer over the preview image (canvas in image pixels).
   * @param {CanvasRenderingContext2D} ctx
   * @param {any} p  the preview answer
   */
  drawPreview(ctx, p) {
    if (!p || this.model.get("show_outputs") === false) return;
    if (p.detections) {
      ctx.setLineDash([]);
      ctx.lineWidth = 1;
      ctx.font = "8px sans-serif";
      for (const { det } of visibleDetections(p.detections, this.model.get("min_score"))) {
        const [x0, y0, x1, y1] = det.box;
        ctx.strokeStyle = "rgba(255, 210, 0, 0.95)";
        ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
        ctx.fillStyle = "rgba(255, 210, 0, 0.95)";
        ctx.fillText(det.name, x0 + 1, Math.max(8, y0 - 1));
      }
    } else if (p.mask && p.shape) {
      const [H, W] = p.shape;
      const pixels = ctx.createImageData(W, H);
      paintMask(toBytes(p.mask), p.legend || (this.model.get("segmentation") || {}).legend, MASK_ALPHA, pixels.data);
      const layer = /** @type {HTMLCanvasElement} */ (h("canvas", { width: W, height: H }));
      layer.getContext("2d")?.putImageData(pixels, 0, 0);
      ctx.drawImage(layer, 0, 0);
    }
  }

  dispose() {
    for (const [event, fn] of this.listeners) this.model.off(event, fn);
    this.ui.stage.removeEventListener("pointerdown", this.onDown, { capture: true });
    this.ui.stage.removeEventListener("pointermove", this.onMove, { capture: true });
    this.ui.stage.removeEventListener("pointerup", this.onUp, { capture: true });
  }
}
