// The widget view: draws what the kernel computed and sends back what the user does.
// Data flows one way: traits -> decode -> draw. The maths lives in the helper modules.

import { throttle, Sequencer } from "./throttle.js";
import { decodeMaps, classValues } from "./decode.js";
import { tableFor, colourLimit, gradientCSS, colorbarTicks } from "./colormap.js";
import { clientToImage, clamp, maskBox, boxToPercent, mapIndex, shownMaskSize } from "./geometry.js";
import { setMethodTable, methodHeading, mapCaption, mapOutput, outputTrait, barEnds, readoutText, worstLabel, worstHint, tickLabels, targetSummary, tabScores, offeredMethods, methodTitle, clipCaption } from "./methods.js";
import { h, buildLayout, renderTabs, renderScores, renderMethods, READOUT_HINT } from "./ui.js";
import { decodePNG, MapPainter, drawFigure } from "./paint.js";
import { buildControls } from "./controls.js";
import { CompareView } from "./compare.js";
import { LayerView } from "./layers.js";
import { OutputsOverlay } from "./outputs.js";
import { viewFigure, downloadFigure } from "./export.js";
import { bindPointerOf, drawPreviewImageOf, renderPreviewScoresOf } from "./preview.js";

/** Preview requests per second while dragging. */
const PREVIEW_HZ = 10;
/** Largest side of the main canvas, CSS pixels. */
const DISPLAY_SIZE = 416;
/** How long to wait for the kernel's answer to a ping before saying that none runs, ms. */
const PONG_TIMEOUT_MS = 3000;

class OcclusionView {
  /** @param {any} model @param {HTMLElement} el */
  constructor(model, el) {
    this.model = model;
    this.ui = buildLayout(el);
    /** @type {ImageBitmap | HTMLImageElement | null} */ this.image = null;
    /** @type {ImageBitmap | HTMLImageElement | null} */ this.fill = null;
    /** @type {[number, number]} */ this.shape = [224, 224];
    this.maps = null;
    /** @type {any} the preview answer shown */ this.shownPreview = undefined;
    /** @type {string | undefined} the colour-bar caption drawn (also the downloaded figure's) */ this.caption = undefined;
    this.painter = new MapPainter();
    const request = model.get("preview_request") || {};
    this.mask = { x: request.x ?? 111.5, y: request.y ?? 111.5 };
    /** @type {number | null} */ this.liveMaskSize = null; // while the mask-size slider moves
    /** @type {number[] | undefined} the last mask size the kernel resolved */ this.resolvedMask = undefined;
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
    this.compare = new CompareView(model, this.ui.compare, this.ui.compareToggle, { image: () => this.image, shape: () => this.shape });
    this.layers = new LayerView(model, this.ui.layers, this.ui.layersToggle);
    this.outputs = new OutputsOverlay(model, this.ui, { shape: () => this.shape });
    // Is a kernel answering? null: not known yet. A saved page's model shim says so up front.
    /** @type {boolean | null} */ this.kernel = model.kernelless === true ? false : null;
    this.onCustom = (msg) => {
      if (msg && msg.type === "pong") this.setKernel(true);
    };
    this.on("msg:custom", this.onCustom);
    this.bindModel();
    this.bindPointer();
    this.ui.worst.addEventListener("click", () => this.moveToWorst());
    this.ui.download.addEventListener("click", () => this.download());
    this.ui.stop.addEventListener("click", () => model.send({ type: "cancel" }));
    this.loadImage().then(() => this.loadFill());
    this.onMaps();
    this.onStatus();
    this.onTabs();
    this.onMethod();
    this.onPreview();
    this.onNotice();
    if (this.kernel === false) this.setKernel(false);
    else {
      this.pongTimer = setTimeout(() => this.kernel === null && this.setKernel(false), PONG_TIMEOUT_MS);
      try {
        model.send({ type: "ping" });
      } catch {
        this.setKernel(false); // no comm at all
      }
    }
  }

  /**
   * Whether a kernel answers: without one the parameter controls, Stop and the methods the
   * page has no maps for are disabled and a banner says why; display controls, class tabs,
   * hover, the compare panels and the mask preview keep working.
   * @param {boolean} alive
   */
  setKernel(alive) {
    this.kernel = alive;
    clearTimeout(this.pongTimer);
    this.ui.banner.hidden = alive;
    this.ui.root.dataset.kernel = alive ? "yes" : "no";
    this.controls.setKernel(alive);
    this.layers.setKernel?.(alive);
    this.ui.stop.disabled = !alive;
    this.onMethod();
  }

  onNotice() {
    const notice = this.model.get("notice") ?? "";
    this.ui.notice.textContent = notice;
    this.ui.notice.hidden = !notice;
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
    this.on("change:resolved_params", () => this.onTabs());
    this.on("change:selected", () => (this.onTabs(), this.schedule()));
    this.on("change:opacity", () => this.schedule());
    this.on("change:colormap", () => this.schedule());
    this.on("change:sequential_colormap", () => this.schedule());
    this.on("change:method", () => this.onMethod());
    this.on("change:percentile", () => this.schedule());
    this.on("change:methods_table", () => {
      setMethodTable(this.model.get("methods_table"));
      this.compare.render();
      this.onMethod();
      this.onTabs();
      this.schedule();
    });
    this.on("change:comparison_data", () => this.onStatus());
    this.on("change:layer_data", () => this.onStatus());
    this.on("change:status", () => this.onStatus());
    this.on("change:progress", () => this.onStatus());
    this.on("change:error", () => this.onStatus());
    this.on("change:preview", () => this.onPreview());
    this.on("change:model_name", () => this.onStatus());
    this.on("change:notice", () => this.onNotice());
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

  /** @param {boolean} signed  a diverging scale (occlusion) or a sequential one (non-negative maps) */
  lut(signed) {
    const m = this.model;
    return signed ? tableFor(m.get("colormaps"), m.get("colormap")) : tableFor(m.get("sequential_colormaps"), m.get("sequential_colormap"));
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
      // The column is as wide as the image: a longer read-out wraps instead of widening it.
      this.ui.left.style.width = `${Math.round(this.shape[1] * scale)}px`;
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
    const maps = this.maps;
    const signed = maps ? maps.signed : true;
    const method = maps ? maps.method : this.model.get("method");
    const lut = this.lut(signed);
    const values = maps ? classValues(maps, this.selected) : null;
    const percentile = this.percentile;
    const limit = values ? colourLimit(values, signed, percentile) : 1;
    const smooth = this.model.get("resolved_params")?.upsampling !== "nearest" && !!maps && maps.width === this.shape[1];
    const layer = maps && values && { values, height: maps.height, width: maps.width, limit, signed, lut, opacity: this.model.get("opacity"), smooth };
    this.painter.paint(canvas, this.image, layer);
    canvas.dataset.version = String(maps ? maps.version : 0);
    canvas.dataset.method = method;
    // What is drawn, for tests and tools to wait on.
    Object.assign(canvas.dataset, { selected: String(this.selected), opacity: String(this.model.get("opacity")),
      colormap: String(this.model.get(signed ? "colormap" : "sequential_colormap")) });
    this.ui.barGradient.style.background = gradientCSS(lut);
    this.ui.barGradient.dataset.signed = String(signed);
    const output = mapOutput(method, this.model.get("resolved_params"), this.outputOf(method));
    this.ticks = tickLabels(colorbarTicks(limit, signed), method, output);
    this.ui.barTicks.replaceChildren(...this.ticks.map((text) => h("span", {}, text)));
    const [top, bottom] = barEnds(signed);
    this.ui.barTop.textContent = top;
    this.ui.barBottom.textContent = bottom;
    this.caption = mapCaption(method, this.model.get("resolved_params"), this.outputOf(method)) + clipCaption(percentile);
    this.ui.barCaption.textContent = this.caption;
    this.ui.barGradient.dataset.limit = String(limit);
    this.ui.worst.textContent = worstLabel(method);
    this.ui.worst.title = worstHint(method);
    this.ui.worst.disabled = !(maps && maps.worst[this.selected]);
  }

  /** The display percentile (view state): null for the full range. @returns {number | null} */
  get percentile() {
    const p = this.model.get("percentile");
    return typeof p === "number" && p > 0 && p <= 100 ? p : null;
  }

  /**
   * The score a method explains before a result says so: the value of its output trait.
   * @param {string} method
   * @returns {string | undefined}
   */
  outputOf(method) {
    const trait = outputTrait(method);
    return trait ? this.model.get(trait) : undefined;
  }

  onMethod() {
    const method = this.model.get("method");
    const offered = offeredMethods(method, this.kernel !== false, this.model.availableMethods);
    renderMethods(this.ui.methods, method, offered, (m) => {
      this.model.set("method", m);
      this.model.save_changes();
    });
    this.ui.title.textContent = methodHeading(method);
    this.ui.root.dataset.method = method;
  }

  onTabs() {
    const classes = this.model.get("classes") || [];
    const output = this.model.get("resolved_params")?.output ?? this.outputOf(this.model.get("method"));
    renderTabs(this.ui.tabs, classes, this.selected, tabScores(classes, output, this.shownPreview), (i) => {
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
    this.ui.progress.parentElement?.classList.toggle("ow-progress-idle", status !== "running");
    // The header's Stop also stops the compare and layer views' work.
    const views = [m.get("comparison_data")?.status, m.get("layer_data")?.status];
    this.ui.stop.hidden = status !== "running" && !views.includes("running");
    const error = status === "error" ? m.get("error") : "";
    this.ui.error.textContent = error ? `${error} \u2014 change the parameter and the maps are recomputed.` : "";
    this.ui.error.hidden = !error;
    this.ui.root.dataset.status = status;
  }

  // --- the draggable mask --------------------------------------------------------------------

  /** @returns {[number, number] | null}  null: not a size the engine accepts (nothing is drawn) */
  maskSize() {
    // "auto" is resolved by the kernel only: the preview's answer, else the last occlusion result's parameters.
    const resolved = this.shownPreview?.mask_size ?? this.model.get("resolved_params")?.mask_size ?? this.resolvedMask;
    if (Array.isArray(resolved)) this.resolvedMask = resolved; // kept while another method's result is shown
    return shownMaskSize(this.liveMaskSize, this.model.get("mask_size"), resolved, this.shape);
  }

  placeMask() {
    const size = this.maskSize();
    this.ui.mask.hidden = !size;
    if (!size) return;
    const box = maskBox(this.mask.y, this.mask.x, size, this.shape, this.model.get("mask_clipping"));
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
    bindPointerOf(this);
  }

  readout(x, y) {
    const maps = this.maps;
    const ix = Math.round(x);
    const iy = Math.round(y);
    if (!maps || ix < 0 || iy < 0 || ix >= this.shape[1] || iy >= this.shape[0]) return;
    const i = mapIndex(x, y, this.shape, [maps.height, maps.width]);
    const value = i < 0 ? NaN : classValues(maps, this.selected)[i];
    const name = (this.model.get("classes") || [])[this.selected]?.name ?? "";
    const peak = maps.ranges[this.selected]?.[1] ?? NaN;
    const output = mapOutput(maps.method, this.model.get("resolved_params"), this.outputOf(maps.method));
    this.ui.readout.textContent = readoutText(maps.method, value, peak, ix, iy, name, output);
    // The exact value and where, for tests and tools (the text is rounded).
    Object.assign(this.ui.readout.dataset, { value: String(value), x: String(ix), y: String(iy), selected: String(this.selected) });
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
    if (p.mask_size) this.placeMask();
    this.drawPreviewImage();
    this.renderPreviewScores();
    this.onTabs(); // the tabs show the preview's unoccluded scores
  }

  drawPreviewImage() {
    drawPreviewImageOf(this);
  }

  renderPreviewScores() {
    renderPreviewScoresOf(this);
  }

  // --- export ----------------------------------------------------------------------------------

  /** The figure of what is shown (see export.js). @returns {HTMLCanvasElement} */
  figure() {
    return viewFigure(this, DISPLAY_SIZE);
  }

  download() {
    downloadFigure(this, this.figure());
  }

  dispose() {
    for (const [event, fn] of this.listeners) this.model.off(event, fn);
    clearTimeout(this.pongTimer);
    this.controls.dispose();
    this.compare.dispose();
    this.layers.dispose();
    this.outputs.dispose();
    this.sendPreview.cancel();
  }
}

/** anywidget entry point. */
function render({ model, el }) {
  setMethodTable(model.get("methods_table")); // every title, caption and format below reads it
  const view = new OcclusionView(model, el);
  return () => view.dispose();
}

export default { render };
