// Drawing into canvases: PNG bytes to images, and a map over an image through a colour table.
// Needs a DOM (the colour maths is in colormap.js).

import { toBytes } from "./decode.js";
import { paintRGBA } from "./colormap.js";

/**
 * Decode PNG bytes into something drawImage accepts.
 * @param {any} value  a Bytes trait
 * @returns {Promise<CanvasImageSource | null>}
 */
export async function decodePNG(value) {
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
    /** @type {Uint8ClampedArray | undefined} */
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
