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

/**
 * The mask size a mask-size trait stands for, or null when the engine would refuse it (so
 * nothing is drawn until the value is valid): "auto", a positive integer or an [h, w] pair
 * of them, each at most the image's side (axes of length 1 always take 1, as in the engine).
 * @param {unknown} value
 * @param {[number, number]} shape  (H, W)
 * @param {number} [fraction]  the "auto" fraction
 * @returns {[number, number] | null}
 */
export function validMaskSize(value, shape, fraction = 0.2) {
  let pair;
  if (value === "auto") return resolvePair("auto", shape, fraction);
  if (typeof value === "number") pair = [value, value];
  else if (Array.isArray(value) && value.length === 2) pair = [value[0], value[1]];
  else return null;
  pair = pair.map((v, i) => (shape[i] === 1 && Number.isInteger(v) ? 1 : v));
  const ok = pair.every((v, i) => typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= shape[i]);
  return ok ? /** @type {[number, number]} */ (pair) : null;
}

/**
 * @typedef {object} FigurePanel
 * @property {Rect} head   the panel's title line (height 0 without titles)
 * @property {Rect} image
 * @property {Rect} bar    the colour bar beside the image
 * @property {number} ticksX  left edge of the tick labels
 * @property {Rect} foot   the line under the image (height 0 without footers)
 */

/** Sizes of the downloaded figure, CSS pixels. */
export const FIGURE = { pad: 14, title: 46, head: 20, foot: 20, barGap: 8, bar: 14, ticks: 50, gap: 18 };

/**
 * Where everything goes in a downloaded figure: a title band across the top, then `count`
 * panels in rows of `columns`, each an image of `imageW` x `imageH` with its colour bar and
 * tick labels to the right, an optional title line above and footer line below.
 * @param {{count: number, columns?: number, imageW: number, imageH: number, heads?: boolean, feet?: boolean}} spec
 * @returns {{width: number, height: number, title: Rect, panels: FigurePanel[]}}
 */
export function figureLayout({ count, columns = count, imageW, imageH, heads = false, feet = false }) {
  if (!(count >= 1) || !(imageW > 0) || !(imageH > 0)) throw new RangeError(`figureLayout: need count >= 1 and a positive image size, got ${count}, ${imageW}x${imageH}`);
  const f = FIGURE;
  const cols = Math.max(1, Math.min(columns, count));
  const rows = Math.ceil(count / cols);
  const iw = Math.round(imageW);
  const ih = Math.round(imageH);
  const panelW = iw + f.barGap + f.bar + 4 + f.ticks;
  const panelH = (heads ? f.head : 0) + ih + (feet ? f.foot : 0);
  const width = 2 * f.pad + cols * panelW + (cols - 1) * f.gap;
  const height = f.pad + f.title + rows * panelH + (rows - 1) * f.gap + f.pad;
  const panels = [];
  for (let i = 0; i < count; i++) {
    const left = f.pad + (i % cols) * (panelW + f.gap);
    const top = f.pad + f.title + Math.floor(i / cols) * (panelH + f.gap);
    const head = { left, top, width: panelW, height: heads ? f.head : 0 };
    const image = { left, top: top + head.height, width: iw, height: ih };
    const bar = { left: left + iw + f.barGap, top: image.top, width: f.bar, height: ih };
    const foot = { left, top: image.top + ih, width: panelW, height: feet ? f.foot : 0 };
    panels.push({ head, image, bar, ticksX: bar.left + f.bar + 4, foot });
  }
  return { width, height, title: { left: f.pad, top: f.pad, width: width - 2 * f.pad, height: f.title }, panels };
}
