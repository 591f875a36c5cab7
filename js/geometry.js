// Coordinates: screen (client) pixels <-> image pixels <-> map cells, and mask boxes. Pure.

/**
 * @typedef {{left: number, top: number, width: number, height: number}} Rect
 * @typedef {[number, number, number, number]} Box  [y0, x0, y1, x1) in image pixels
 */

/**
 * Image pixel coordinates (continuous, pixel centres at integers) of a
 * pointer position over an element showing the whole image in `rect`.
 * @param {Rect} rect  the element's bounding client rect
 * @param {number} width  image width in pixels
 * @param {number} height
 * @param {number} clientX
 * @param {number} clientY
 * @returns {{x: number, y: number}}
 */
export function clientToImage(rect, width, height, clientX, clientY) {
  return {
    x: ((clientX - rect.left) / rect.width) * width - 0.5,
    y: ((clientY - rect.top) / rect.height) * height - 0.5,
  };
}

/**
 * Client coordinates of an image pixel (the inverse of clientToImage).
 * @param {Rect} rect
 * @param {number} width
 * @param {number} height
 * @param {number} x
 * @param {number} y
 */
export function imageToClient(rect, width, height, x, y) {
  return {
    x: rect.left + ((x + 0.5) / width) * rect.width,
    y: rect.top + ((y + 0.5) / height) * rect.height,
  };
}

/**
 * @param {number} value
 * @param {number} lo
 * @param {number} hi
 */
export function clamp(value, lo, hi) {
  return value < lo ? lo : value > hi ? hi : value;
}

/**
 * The mask box centred at pixel (cy, cx). Same rule as the sweep and as
 * `occlusion_widget.preview.mask_box`: it starts at round(c) - floor(m / 2);
 * with clipping it is cut to the image, without it is moved inside.
 * @param {number} cy
 * @param {number} cx
 * @param {[number, number]} mask  (h, w)
 * @param {[number, number]} shape  (H, W)
 * @param {boolean} clipping
 * @returns {Box}
 */
export function maskBox(cy, cx, mask, shape, clipping) {
  const span = (c, m0, n) => {
    const m = Math.min(Math.round(m0), n);
    let start = Math.round(c) - Math.floor(m / 2);
    if (clipping) return [Math.max(start, 0), Math.min(start + m, n)];
    start = clamp(start, 0, n - m);
    return [start, start + m];
  };
  const [y0, y1] = span(cy, mask[0], shape[0]);
  const [x0, x1] = span(cx, mask[1], shape[1]);
  return [y0, x0, y1, x1];
}

/**
 * CSS percentages placing a box over an element that shows the whole image.
 * @param {Box} box
 * @param {[number, number]} shape  (H, W)
 */
export function boxToPercent(box, shape) {
  const [y0, x0, y1, x1] = box;
  const [h, w] = shape;
  return {
    left: (x0 / w) * 100,
    top: (y0 / h) * 100,
    width: ((x1 - x0) / w) * 100,
    height: ((y1 - y0) / h) * 100,
  };
}

/**
 * Index into a (mapH, mapW) map of the cell under image pixel (x, y) of an
 * (imageH, imageW) image; -1 outside. Maps may be smaller than the image
 * (upsampling "none": one cell per mask position).
 * @param {number} x
 * @param {number} y
 * @param {[number, number]} image  (H, W)
 * @param {[number, number]} map  (h, w)
 */
export function mapIndex(x, y, image, map) {
  const col = Math.floor(((x + 0.5) / image[1]) * map[1]);
  const row = Math.floor(((y + 0.5) / image[0]) * map[0]);
  if (col < 0 || row < 0 || col >= map[1] || row >= map[0]) return -1;
  return row * map[1] + col;
}

/**
 * Resolve a mask-size or stride trait ("auto", n or [h, w]) to a pair, with
 * the engine's rule for "auto" (a fraction of each axis, at least 1).
 * @param {"auto" | number | number[]} value
 * @param {[number, number]} shape
 * @param {number} fraction
 * @returns {[number, number]}
 */
export function resolvePair(value, shape, fraction) {
  if (Array.isArray(value) && value.length === 2) return [value[0], value[1]];
  if (typeof value === "number") return [value, value];
  return [Math.max(1, Math.round(fraction * shape[0])), Math.max(1, Math.round(fraction * shape[1]))];
}
