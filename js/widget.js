// The widget view: draws what the kernel computed and sends back what the user does.
// Data flows one way: traits -> decode -> draw. The maths lives in the helper modules.

import { throttle, Sequencer } from "./throttle.js";
import { decodeMaps, classValues, toBytes } from "./decode.js";
import { lookupTable, symmetricLimit, paintRGBA, gradientCSS, colorbarTicks, formatValue } from "./colormap.js";
import { clientToImage, clamp, maskBox, boxToPercent, mapIndex, resolvePair } from "./geometry.js";
import { h, buildLayout, renderTabs, renderScores, targetSummary } from "./ui.js";
import { buildControls } from "./controls.js";

/** Preview requests per second while dragging. */
const PREVIEW_HZ = 10;
/** Largest side of the main canvas, CSS pixels. */
const DISPLAY_SIZE = 416;

/**
 * Decode PNG bytes into something drawImage accepts.
 * @param {any} value  the Bytes trait
 * @returns {Promise<CanvasImageSource | null>}
 */
async function decodePNG(value) {
  const bytes = toBytes(value);
  if (bytes.byteLength === 0) return null;
  const blob = new Blob([bytes], { type: "image/png" });
  if (typeof createImageBitmap === "function") return createImageBitmap(blob);
  const url = URL.createObjectURL(blob);
  try {
    const img = new Image();
    img.src = url;
    await img.decode();
    return img;
  } finally {
    URL.revokeObjectURL(url);
  }
}

class OcclusionView {
  /** @param {any} model @param {HTMLElement} el */
  constructor(model, el) {
    this.model = model;
    this.ui = buildLayout(el);
    /** @type {CanvasImageSource | null} */ this.image = null;
    /** @type {CanvasImageSource | null} */ this.fill = null;
    /** @type {[number, number]} */ this.shape = [224, 224];
    this.maps = null;
    this.heat = document.createElement("canvas");
    this.rgba = undefined;
    const request = model.get("preview_request") || {};
    this.mask = { x: request.x ?? 111.5, y: request.y ?? 111.5 };
    this.liveMaskSize = null; // while the mask-size slider moves
    this.dragging = false;
    this.sequencer = new Sequencer(request.seq ?? 0);
    this.frame = 0;
    this.sendPreview = throttle((x, y) => this.request(x, y), 1000 / PREVIEW_HZ);
    this.listeners = [];
    this.controls = buildControls(model, this.ui.controls, {
      imageShape: () => this.shape,
      onInput: (name, value) => {
        if (name === "mask_size") {
          this.liveMaskSize = value;
          this.placeMask();
        }
      },
    });
    this.bindModel();
    this.bindPointer();
    this.ui.worst.addEventListener("click", () => this.moveToWorst());
    this.ui.download.addEventListener("click", () => this.download());
    this.ui.stop.addEventListener("click", () => model.send({ type: "cancel" }));
    this.loadImage().then(() => this.loadFill());
    this.onMaps();
    this.onStatus();
    this.onTabs();
    this.onPreview();
  }

  on(event, fn) {
    this.model.on(event, fn);
    this.listeners.push([event, fn]);
  }

  bindModel() {
    this.on("change:image_png", () => this.loadImage());
    this.on("change:fill_png", () => this.loadFill());
    this.on("change:map_data", () => this.onMaps());
    this.on("change:classes", () => this.onTabs());
    this.on("change:selected", () => (this.onTabs(), this.schedule()));
    this.on("change:opacity", () => this.schedule());
    this.on("change:colormap", () => this.schedule());
    this.on("change:status", () => this.onStatus());
    this.on("change:progress", () => this.onStatus());
    this.on("change:error", () => this.onStatus());
    this.on("change:preview", () => this.onPreview());
    this.on("change:model_name", () => this.onStatus());
    for (const name of ["mask_size", "mask_clipping", "resolved_params"]) this.on(`change:${name}`, () => this.placeMask());
    this.on("change:preview_request", () => {
      const r = this.model.get("preview_request") || {};
      this.sequencer.observe(r.seq ?? 0);
      if (!this.dragging && r.x !== undefined) {
        this.mask = { x: r.x, y: r.y };
        this.placeMask();
      }
    });
  }

  // --- drawing -----------------------------------------------------------------------------

  schedule() {
    if (this.frame) return;
    const raf = typeof requestAnimationFrame === "function" ? requestAnimationFrame : (f) => setTimeout(f, 16);
    this.frame = raf(() => {
      this.frame = 0;
      this.draw();
    });
  }

  get selected() {
    const k = this.maps ? this.maps.k : (this.model.get("classes") || []).length;
    return clamp(this.model.get("selected") || 0, 0, Math.max(0, k - 1));
  }

  lut() {
    const tables = this.model.get("colormaps") || {};
    const flat = tables[this.model.get("colormap")] || Object.values(tables)[0];
    return flat ? lookupTable(flat) : lookupTable([0, 0, 255, 255, 255, 255, 255, 0, 0]);
  }

  async loadImage() {
    this.image = await decodePNG(this.model.get("image_png"));
    if (this.image) {
      this.shape = [this.image.height, this.image.width];
      const scale = DISPLAY_SIZE / Math.max(...this.shape);
      const ratio = typeof devicePixelRatio === "number" ? Math.min(devicePixelRatio, 2) : 1;
      this.ui.canvas.width = Math.round(this.shape[1] * scale * ratio);
      this.ui.canvas.height = Math.round(this.shape[0] * scale * ratio);
      this.ui.stage.style.width = `${Math.round(this.shape[1] * scale)}px`;
      this.ui.stage.style.aspectRatio = `${this.shape[1]} / ${this.shape[0]}`;
      this.ui.previewCanvas.width = this.shape[1];
      this.ui.previewCanvas.height = this.shape[0];
    }
    this.controls.sync();
    this.placeMask();
    this.schedule();
    this.drawPreviewImage();
  }

  async loadFill() {
    this.fill = await decodePNG(this.model.get("fill_png"));
    this.drawPreviewImage();
  }

  onMaps() {
    this.maps = decodeMaps(this.model.get("map_data"));
    this.schedule();
  }

  draw() {
    const { canvas } = this.ui;
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (this.image) ctx.drawImage(this.image, 0, 0, canvas.width, canvas.height);
    const maps = this.maps;
    const lut = this.lut();
    let limit = 1;
    if (maps) {
      const values = classValues(maps, this.selected);
      limit = symmetricLimit(values);
      this.rgba = paintRGBA(values, limit, lut, this.model.get("opacity"), this.rgba);
      this.heat.width = maps.width;
      this.heat.height = maps.height;
      const hctx = this.heat.getContext("2d");
      hctx.putImageData(new ImageData(this.rgba, maps.width, maps.height), 0, 0);
      ctx.imageSmoothingEnabled = this.model.get("resolved_params")?.upsampling !== "nearest" && maps.width === this.shape[1];
      ctx.drawImage(this.heat, 0, 0, canvas.width, canvas.height);
      ctx.imageSmoothingEnabled = true;
    }
    canvas.dataset.version = String(maps ? maps.version : 0);
    this.ui.barGradient.style.background = gradientCSS(lut);
    this.ui.barTicks.replaceChildren(...colorbarTicks(limit).map((v) => h("span", {}, formatValue(v, 2))));
    const output = this.model.get("output");
    this.ui.barCaption.textContent = `drop in ${output === "logit" ? "logit" : "probability"} when occluded`;
    this.ui.worst.disabled = !(maps && maps.worst[this.selected]);
  }

  onTabs() {
    const classes = this.model.get("classes") || [];
    renderTabs(this.ui.tabs, classes, this.selected, this.model.get("output"), (i) => {
      this.model.set("selected", i);
      this.model.save_changes();
    });
    this.renderPreviewScores();
  }

  onStatus() {
    const m = this.model;
    const status = m.get("status");
    const progress = m.get("progress") || 0;
    this.ui.modelName.textContent = m.get("model_name") ? `\u00b7 ${m.get("model_name")}` : "";
    const text = { idle: "idle", running: `computing ${Math.round(progress * 100)}%`, done: "done", cancelled: "stopped", error: "error" };
    this.ui.status.textContent = text[status] ?? status;
    this.ui.status.className = `ow-status ow-status-${status}`;
    this.ui.progress.style.width = `${(status === "running" ? progress : status === "done" ? 1 : progress) * 100}%`;
    this.ui.progress.parentElement.classList.toggle("ow-progress-idle", status !== "running");
    this.ui.stop.hidden = status !== "running";
    const error = status === "error" ? m.get("error") : "";
    this.ui.error.textContent = error ? `${error} \u2014 change the parameter and the maps are recomputed.` : "";
    this.ui.error.hidden = !error;
    this.ui.root.dataset.status = status;
  }

  // --- the draggable mask --------------------------------------------------------------------

  maskSize() {
    if (this.liveMaskSize !== null) return [this.liveMaskSize, this.liveMaskSize];
    return resolvePair(this.model.get("mask_size"), this.shape, 0.2);
  }

  placeMask() {
    const box = maskBox(this.mask.y, this.mask.x, this.maskSize(), this.shape, this.model.get("mask_clipping"));
    const p = boxToPercent(box, this.shape);
    Object.assign(this.ui.mask.style, { left: `${p.left}%`, top: `${p.top}%`, width: `${p.width}%`, height: `${p.height}%` });
  }

  moveTo(x, y) {
    this.mask = { x: clamp(x, 0, this.shape[1] - 1), y: clamp(y, 0, this.shape[0] - 1) };
    this.placeMask();
  }

  request(x, y) {
    this.model.set("preview_request", { x, y, seq: this.sequencer.next() });
    this.model.save_changes();
  }

  bindPointer() {
    const stage = this.ui.stage;
    const toImage = (e) => clientToImage(stage.getBoundingClientRect(), this.shape[1], this.shape[0], e.clientX, e.clientY);
    let offset = { x: 0, y: 0 };
    stage.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      e.preventDefault();
      const p = toImage(e);
      // Grab the mask where it was clicked; a click elsewhere brings the mask there.
      offset = e.target === this.ui.mask || this.ui.mask.contains(/** @type {Node} */ (e.target)) ? { x: this.mask.x - p.x, y: this.mask.y - p.y } : { x: 0, y: 0 };
      this.dragging = true;
      stage.setPointerCapture?.(e.pointerId);
      this.moveTo(p.x + offset.x, p.y + offset.y);
      this.sendPreview(this.mask.x, this.mask.y);
      this.ui.root.classList.add("ow-dragging");
    });
    stage.addEventListener("pointermove", (e) => {
      const p = toImage(e);
      if (this.dragging) {
        this.moveTo(p.x + offset.x, p.y + offset.y);
        this.sendPreview(this.mask.x, this.mask.y);
      }
      this.readout(p.x, p.y);
    });
    const end = (e) => {
      if (!this.dragging) return;
      this.dragging = false;
      stage.releasePointerCapture?.(e.pointerId);
      this.sendPreview.flush();
      this.ui.root.classList.remove("ow-dragging");
    };
    stage.addEventListener("pointerup", end);
    stage.addEventListener("pointercancel", end);
    stage.addEventListener("pointerleave", () => {
      if (!this.dragging) this.ui.readout.textContent = "Hover the image to read values; drag to move the mask.";
    });
  }

  readout(x, y) {
    const maps = this.maps;
    const ix = Math.round(x);
    const iy = Math.round(y);
    if (!maps || ix < 0 || iy < 0 || ix >= this.shape[1] || iy >= this.shape[0]) return;
    const i = mapIndex(x, y, this.shape, [maps.height, maps.width]);
    const value = i < 0 ? NaN : classValues(maps, this.selected)[i];
    const name = (this.model.get("classes") || [])[this.selected]?.name ?? "";
    this.ui.readout.textContent = value === value ? `${formatValue(value)} at (${ix}, ${iy}) \u2014 occluding here changes ${name} by ${formatValue(-value)}` : `not computed yet at (${ix}, ${iy})`;
  }

  moveToWorst() {
    const spot = this.maps?.worst?.[this.selected];
    if (!spot) return;
    this.moveTo(spot[1], spot[0]);
    this.sendPreview.cancel();
    this.request(this.mask.x, this.mask.y);
  }

  // --- the preview panel -------------------------------------------------------------------

  onPreview() {
    const p = this.model.get("preview");
    if (!p || p.seq === undefined || !this.sequencer.accept(p.seq)) return;
    this.shownPreview = p;
    this.drawPreviewImage();
    this.renderPreviewScores();
  }

  drawPreviewImage() {
    const canvas = this.ui.previewCanvas;
    const ctx = canvas.getContext("2d");
    const p = this.shownPreview;
    if (!ctx || !this.image) return;
    ctx.drawImage(this.image, 0, 0, canvas.width, canvas.height);
    if (!p || !p.box) return;
    const [y0, x0, y1, x1] = p.box;
    if (this.fill) ctx.drawImage(this.fill, x0, y0, x1 - x0, y1 - y0, x0, y0, x1 - x0, y1 - y0);
    ctx.strokeStyle = "rgba(255, 255, 255, 0.9)";
    ctx.setLineDash([3, 2]);
    ctx.strokeRect(x0 + 0.5, y0 + 0.5, x1 - x0 - 1, y1 - y0 - 1);
  }

  renderPreviewScores() {
    const p = this.shownPreview;
    const ui = this.ui;
    if (!p) return;
    if (p.error) {
      ui.previewSummary.textContent = p.error;
      ui.previewSummary.classList.add("ow-preview-error");
      return;
    }
    ui.previewSummary.classList.remove("ow-preview-error");
    const current = (this.model.get("classes") || [])[this.selected];
    const id = current ? current.id : -1;
    renderScores(ui.previewBase, p.base, id, p.output);
    renderScores(ui.previewMasked, p.occluded, id, p.output);
    const target = (p.targets || []).find((t) => t.id === id);
    ui.previewSummary.textContent = targetSummary(target, current?.name ?? "", p.output);
    ui.previewSummary.dataset.seq = String(p.seq);
  }

  // --- export ----------------------------------------------------------------------------------

  download() {
    const name = ((this.model.get("classes") || [])[this.selected]?.name ?? "map").replace(/[^\w-]+/g, "_");
    const link = h("a", { href: this.ui.canvas.toDataURL("image/png"), download: `occlusion_${name}.png` });
    document.body.append(link);
    link.click();
    link.remove();
  }

  dispose() {
    for (const [event, fn] of this.listeners) this.model.off(event, fn);
    this.controls.dispose();
    this.sendPreview.cancel();
  }
}

/** anywidget entry point. */
function render({ model, el }) {
  const view = new OcclusionView(model, el);
  return () => view.dispose();
}

export default { render };
