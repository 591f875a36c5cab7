// Drawing into canvases: PNG bytes to images, and a map over an image through a colour table.
// Needs a DOM (the colour maths is in colormap.js).

import { toBytes } from "./decode.js";
import { paintRGBA } from "./colormap.js";
import { figureLayout } from "./geometry.js";

/**
 * Decode PNG bytes into something drawImage accepts.
 * @param {any} value  a Bytes trait
 * @returns {Promise<ImageBitmap | HTMLImageElement | null>}
 */
export async function decodePNG(value) {
  const bytes = toBytes(value);
  if (bytes.byteLength === 0) return null;
  // Trait bytes are never shared memory, which is all that Blob refuses.
  const blob = new Blob([/** @type {Uint8Array<ArrayBuffer>} */ (bytes)], { type: "image/png" });
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

/**
 * @typedef {object} MapLayer
 * @property {ArrayLike<number>} values  height * width values, row-major; NaN is transparent
 * @property {number} height
 * @property {number} width
 * @property {number} limit  the end of the scale (> 0)
 * @property {boolean} signed  -limit..limit (diverging) or 0..limit (sequential)
 * @property {Uint8Array} lut
 * @property {number} opacity
 * @property {boolean} smooth  interpolate when the map is scaled up
 */

/** Paints maps over images; keeps its scratch canvas and pixel buffer between calls. */
export class MapPainter {
  constructor() {
    this.heat = document.createElement("canvas");
    /** @type {Uint8ClampedArray<ArrayBuffer> | undefined} */
    this.rgba = undefined;
  }

  /**
   * Fill `canvas` with `image` (if any) and `map` over it, both stretched to the canvas.
   * @param {HTMLCanvasElement} canvas
   * @param {CanvasImageSource | null} image
   * @param {MapLayer | null} map
   */
  paint(canvas, image, map) {
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (image) ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    if (!map) return;
    this.rgba = paintRGBA(map.values, map.limit, map.lut, map.opacity, this.rgba, map.signed);
    this.heat.width = map.width;
    this.heat.height = map.height;
    this.heat.getContext("2d")?.putImageData(new ImageData(this.rgba, map.width, map.height), 0, 0);
    ctx.imageSmoothingEnabled = map.smooth;
    ctx.drawImage(this.heat, 0, 0, canvas.width, canvas.height);
    ctx.imageSmoothingEnabled = true;
  }
}

/**
 * @typedef {object} FigureSpec
 * @property {string} title     class name and score
 * @property {string} subtitle  method and what the colours mean
 * @property {number} imageW    each panel's image size, CSS pixels
 * @property {number} imageH
 * @property {number} [columns]
 * @property {{source: CanvasImageSource | null, head?: string, foot?: string, lut: Uint8Array, ticks: string[]}[]} panels
 *   each panel's picture (the image with its overlay, already painted), its colour table and its
 *   tick labels from the top of the bar to the bottom
 */

/**
 * The figure a "Download PNG" saves, drawn on an offscreen canvas: a title band, then each
 * panel's picture with its colour bar and numbers (geometry.js: figureLayout places them).
 * @param {FigureSpec} spec
 * @param {number} [ratio]  device pixels per CSS pixel
 * @returns {HTMLCanvasElement}
 */
export function drawFigure(spec, ratio = 1) {
  const heads = spec.panels.some((p) => p.head);
  const feet = spec.panels.some((p) => p.foot);
  const layout = figureLayout({ count: spec.panels.length, columns: spec.columns, imageW: spec.imageW, imageH: spec.imageH, heads, feet });
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(layout.width * ratio);
  canvas.height = Math.round(layout.height * ratio);
  const ctx = canvas.getContext("2d");
  if (!ctx) return canvas;
  ctx.scale(ratio, ratio);
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, layout.width, layout.height);
  const font = 'system-ui, -apple-system, "Segoe UI", sans-serif';
  ctx.textBaseline = "top";
  ctx.fillStyle = "#1f2328";
  ctx.font = `600 16px ${font}`;
  ctx.fillText(spec.title, layout.title.left, layout.title.top, layout.title.width);
  ctx.fillStyle = "#59636e";
  ctx.font = `12px ${font}`;
  ctx.fillText(spec.subtitle, layout.title.left, layout.title.top + 22, layout.title.width);
  spec.panels.forEach((panel, i) => {
    const r = layout.panels[i];
    if (panel.head) {
      ctx.fillStyle = "#1f2328";
      ctx.font = `600 12px ${font}`;
      ctx.fillText(panel.head, r.head.left, r.head.top + 2, r.head.width);
    }
    if (panel.source) ctx.drawImage(panel.source, r.image.left, r.image.top, r.image.width, r.image.height);
    // The colour bar: the table from the bottom (first entry) to the top (last).
    const n = panel.lut.length / 3;
    const gradient = ctx.createLinearGradient(0, r.bar.top + r.bar.height, 0, r.bar.top);
    for (let s = 0; s < 17; s++) {
      const j = Math.round((s / 16) * (n - 1)) * 3;
      gradient.addColorStop(s / 16, `rgb(${panel.lut[j]}, ${panel.lut[j + 1]}, ${panel.lut[j + 2]})`);
    }
    ctx.fillStyle = gradient;
    ctx.fillRect(r.bar.left, r.bar.top, r.bar.width, r.bar.height);
    ctx.strokeStyle = "#d1d9e0";
    ctx.strokeRect(r.bar.left + 0.5, r.bar.top + 0.5, r.bar.width - 1, r.bar.height - 1);
    ctx.fillStyle = "#1f2328";
    ctx.font = `11px ${font}`;
    ctx.textBaseline = "middle";
    const last = Math.max(1, panel.ticks.length - 1);
    panel.ticks.forEach((label, t) => {
      const y = r.bar.top + (t / last) * r.bar.height;
      ctx.fillText(label, r.ticksX, Math.min(Math.max(y, r.bar.top + 6), r.bar.top + r.bar.height - 6));
    });
    ctx.textBaseline = "top";
    if (panel.foot) {
      ctx.fillStyle = "#59636e";
      ctx.fillText(panel.foot, r.foot.left, r.foot.top + 4, r.foot.width);
    }
  });
  return canvas;
}
