// Segmenters and detectors: which boxes to draw, which tab a clicked box belongs to, the target a
// click or a dragged region adds, and the colours of a predicted mask. Pure functions.

/** Detections below this score are not drawn (unless min_score is lower): a detector reports many weak ones. */
export const DRAW_MIN_SCORE = 0.3;

/**
 * The detections to draw, with their index into `detections`.
 * @param {{box: number[], label: number, score: number, name: string}[]} detections
 * @param {number} minScore  the widget's min_score
 * @returns {{det: any, index: number}[]}
 */
export function visibleDetections(detections, minScore) {
  const floor = Math.min(DRAW_MIN_SCORE, typeof minScore === "number" ? minScore : DRAW_MIN_SCORE);
  return (detections || []).map((det, index) => ({ det, index })).filter(({ det }) => det.score >= floor);
}

/**
 * The detection's target spec (what the kernel builds a DetectionTarget from).
 * @param {{box: number[], label: number, score: number}} det
 */
export function detectionSpec(det) {
  return { kind: "detection", box: [...det.box], label: det.label, score: det.score };
}

/**
 * The tab explaining `det`, or -1.
 * @param {{target?: any}[]} classes  the synced classes (each with its target spec)
 * @param {{box: number[], label: number}} det
 */
export function tabOf(classes, det) {
  return (classes || []).findIndex((c) => {
    const t = c.target;
    return t && t.kind === "detection" && t.label === det.label && t.box.every((v, i) => Math.abs(v - det.box[i]) < 1e-3);
  });
}

/**
 * The trait changes that add `spec` as a new, selected tab after the current ones.
 * @param {{target?: any}[]} classes
 * @param {any} spec
 * @returns {{target_objects: any[], selected: number} | null}  null: the tabs carry no targets (a classifier)
 */
export function addTarget(classes, spec) {
  const current = (classes || []).map((c) => c.target);
  if (current.some((t) => !t)) return null;
  return { target_objects: [...current, spec], selected: current.length };
}

/**
 * A region box (x0, y0, x1, y1) in image pixels from two drag points, clamped to the image; null when
 * smaller than 2 pixels along an axis (a click, not a drag).
 * @param {{x: number, y: number}} a
 * @param {{x: number, y: number}} b
 * @param {[number, number]} shape  (H, W)
 */
export function dragRegion(a, b, shape) {
  const [H, W] = shape;
  const cx = (v) => Math.min(Math.max(v, 0), W);
  const cy = (v) => Math.min(Math.max(v, 0), H);
  const x0 = Math.round(cx(Math.min(a.x, b.x))), x1 = Math.round(cx(Math.max(a.x, b.x) + 1));
  const y0 = Math.round(cy(Math.min(a.y, b.y))), y1 = Math.round(cy(Math.max(a.y, b.y) + 1));
  return x1 - x0 >= 2 && y1 - y0 >= 2 ? [x0, y0, x1, y1] : null;
}

/**
 * RGBA pixels of a predicted mask: each class in its legend colour at `alpha`, class 0 clear.
 * @param {Uint8Array} mask  (H * W) class per pixel
 * @param {{id: number, color: number[]}[]} legend
 * @param {number} alpha  0..255
 * @param {Uint8ClampedArray} out  (H * W * 4)
 */
export function paintMask(mask, legend, alpha, out) {
  const colours = new Map((legend || []).map((e) => [e.id, e.color]));
  for (let i = 0; i < mask.length; i++) {
    const c = mask[i] === 0 ? null : colours.get(mask[i]);
    const o = i * 4;
    if (!c) {
      out[o + 3] = 0;
      continue;
    }
    out[o] = c[0];
    out[o + 1] = c[1];
    out[o + 2] = c[2];
    out[o + 3] = alpha;
  }
  return out;
}
