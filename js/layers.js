// The layer view: a conv layer's strongest channels for the current image, as a grid of
// small activation maps (each on its own scale), labelled with channel index and strength.

import { h, setPressed, renderLayerOptions } from "./ui.js";
import { decodeActivations, plane } from "./decode.js";
import { tableFor, unitScale } from "./colormap.js";
import { formatNumber } from "./methods.js";
import { MapPainter } from "./paint.js";

const COUNTS = [8, 16, 32, 64];

export class LayerView {
  /**
   * @param {any} model
   * @param {HTMLElement} section  where the view goes (hidden while closed)
   * @param {HTMLElement} toggle  the button that opens and closes it
   */
  constructor(model, section, toggle) {
    this.model = model;
    this.section = section;
    this.toggle = toggle;
    this.painter = new MapPainter();
    /** @type {Float32Array | undefined} */ this.scaled = undefined;
    const commit = (name, value) => {
      model.set(name, value);
      model.save_changes();
    };
    this.layerSelect = /** @type {HTMLSelectElement} */ (h("select", { "data-param": "activation_layer", class: "ow-layer-select" }));
    this.layerSelect.addEventListener("change", () => commit("activation_layer", this.layerSelect.value === "" ? null : this.layerSelect.value));
    this.strengthSelect = /** @type {HTMLSelectElement} */ (
      h("select", { "data-param": "layer_strength" }, h("option", { value: "mean" }, "spatial mean"), h("option", { value: "max" }, "spatial max"))
    );
    this.strengthSelect.addEventListener("change", () => commit("layer_strength", this.strengthSelect.value));
    this.countSelect = /** @type {HTMLSelectElement} */ (h("select", { "data-param": "layer_channels" }));
    this.countSelect.addEventListener("change", () => commit("layer_channels", Number(this.countSelect.value)));
    this.summary = h("div", { class: "ow-layer-summary" });
    this.grid = h("div", { class: "ow-layer-grid" });
    const label = (text, node) => h("label", { class: "ow-layer-control" }, h("span", { class: "ow-control-label" }, text), node);
    section.replaceChildren(
      h("div", { class: "ow-section-title" }, "Layer activations"),
      h("div", { class: "ow-layer-controls" }, label("Layer", this.layerSelect), label("Strongest by", this.strengthSelect), label("Channels", this.countSelect)),
      this.summary,
      this.grid,
    );
    this.onToggle = () => commit("show_layers", !model.get("show_layers"));
    toggle.addEventListener("click", this.onToggle);
    this.redraw = () => this.render();
    this.names = ["layer_data", "show_layers", "activation_layer", "layer_strength", "layer_channels", "sequential_colormap", "sequential_colormaps"];
    for (const name of this.names) model.on(`change:${name}`, this.redraw);
    this.render();
  }

  render() {
    const m = this.model;
    const open = Boolean(m.get("show_layers"));
    setPressed(this.toggle, open);
    this.section.hidden = !open;
    if (!open) return;
    const data = m.get("layer_data") || {};
    renderLayerOptions(this.layerSelect, data, m.get("activation_layer"));
    this.strengthSelect.value = m.get("layer_strength");
    const count = m.get("layer_channels");
    const counts = COUNTS.includes(count) ? COUNTS : [...COUNTS, count].sort((a, b) => a - b);
    if (this.countSelect.options.length !== counts.length) this.countSelect.replaceChildren(...counts.map((n) => h("option", { value: String(n) }, String(n))));
    this.countSelect.value = String(count);
    this.section.dataset.status = data.status ?? "pending";
    const acts = decodeActivations(data);
    if (data.status === "error") this.summary.textContent = data.error || "the layer could not be read";
    else if (!acts) this.summary.textContent = "Reading the layer\u2026";
    else {
      const by = acts.strengthBy === "max" ? "spatial max" : "spatial mean";
      const busy = data.status === "running" ? " \u2014 updating\u2026" : "";
      this.summary.textContent = `${acts.layer}: ${acts.total} channels of ${acts.height}\u00d7${acts.width}; the ${acts.n} strongest by ${by}, each on its own scale${busy}`;
    }
    this.summary.classList.toggle("ow-preview-error", data.status === "error");
    this.grid.replaceChildren(...(acts ? this.tiles(acts) : []));
  }

  /** @param {any} acts  from decodeActivations (an Activations) */
  tiles(acts) {
    const lut = tableFor(this.model.get("sequential_colormaps"), this.model.get("sequential_colormap"));
    const size = acts.height * acts.width;
    const tiles = [];
    for (let i = 0; i < acts.n; i++) {
      const canvas = /** @type {HTMLCanvasElement} */ (
        h("canvas", { class: "ow-layer-canvas", width: acts.width, height: acts.height, style: { aspectRatio: `${acts.width} / ${acts.height}` } })
      );
      this.scaled = unitScale(plane(acts.data, acts.n, size, i), this.scaled);
      this.painter.paint(canvas, null, { values: this.scaled, height: acts.height, width: acts.width, limit: 1, signed: false, lut, opacity: 1, smooth: false });
      const channel = acts.channels[i];
      const strength = formatNumber(acts.strength[i], { signed: true });
      tiles.push(
        h(
          "figure",
          { class: "ow-layer-tile", "data-channel": String(channel), title: `channel ${channel}: ${acts.strengthBy} ${strength} (rank ${i + 1})` },
          canvas,
          h("figcaption", {}, h("span", { class: "ow-layer-channel" }, `#${channel}`), h("span", { class: "ow-layer-strength" }, strength)),
        ),
      );
    }
    return tiles;
  }

  /**
   * Without a kernel no other layer can be computed: its selectors are disabled.
   * @param {boolean} alive
   */
  setKernel(alive) {
    for (const node of [this.layerSelect, this.strengthSelect, this.countSelect]) node.disabled = !alive;
  }

  dispose() {
    for (const name of this.names) this.model.off(`change:${name}`, this.redraw);
    this.toggle.removeEventListener("click", this.onToggle);
  }
}
