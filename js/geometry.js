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
 * The mask box centred at pixel (cy, cx), drawn while the mask is dragged (the kernel's preview answer then
 * brings the box it used). Same rule as `occlusion_widget.widget.preview.mask_box`: the centre is first
 * moved into [0, n - 1], the box starts at round(c) - floor(m / 2); with clipping it is cut to the image,
 * without it is moved inside. `mask` is the RESOLVED size (see shownMaskSize), never "auto".
 * @param {number} cy
 * @param {number} cx
 * @param {[number, number]} mask  (h, w)
 * @param {[number, number]} shape  (H, W)
 * @param {boolean} clipping
 * @returns {Box}
 */
export function maskBox(cy, cx, mask, shape, clipping) {
  /** @param {number} c @param {number} m0 @param {number} n @returns {[number, number]} */
  const span = (c, m0, n) => {
    const m = Math.min(Math.round(m0), n);
    let start = Math.round(clamp(c, 0, n - 1)) - Math.floor(m / 2);
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
 * The size an explicit mask-size value stands for, or null when the engine would refuse it (so nothing
 * is drawn until the value is valid): a positive integer or an [h, w] pair of them, each at most the
 * image's side (axes of length 1 always take 1, as in the engine). "auto" is null too: only the kernel
 * resolves it (see shownMaskSize).
 * @param {unknown} value
 * @param {[number, number]} shape  (H, W)
 * @returns {[number, number] | null}
 */
export function validMaskSize(value, shape) {
  let pair;
  if (typeof value === "number") pair = [value, value];
  else if (Array.isArray(value) && value.length === 2) pair = [value[0], value[1]];
  else return null;
  pair = pair.map((v, i) => (shape[i] === 1 && Number.isInteger(v) ? 1 : v));
  const ok = pair.every((v, i) => typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= shape[i]);
  return ok ? /** @type {[number, number]} */ (pair) : null;
}

/**
 * The mask size to draw: the slider's value while it moves, else the `mask_size` trait when it is a number,
 * else (for "auto") what the kernel resolved it to; null (nothing drawn) while none of them is known or valid.
 * @param {number | null} live  the slider's value while it is dragged, else null
 * @param {unknown} trait  the `mask_size` trait: "auto", n or [h, w]
 * @param {unknown} resolved  the kernel's resolved [h, w] (resolved_params.mask_size), if any
 * @param {[number, number]} shape  (H, W)
 * @returns {[number, number] | null}
 */
export function shownMaskSize(live, trait, resolved, shape) {
  if (live !== null) return validMaskSize(live, shape);
  if (trait !== "auto") return validMaskSize(trait, shape);
  return validMaskSize(resolved, shape);
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
