// Words and numbers: the four methods' titles, colour-bar captions, hover read-outs, and the one
// number format per quantity that every view uses. Pure.

// --- numbers: one format per quantity -----------------------------------------------------
//   class scores     probability: percent, 1 decimal ("41.3%"); logit: 3 significant digits ("2.35")
//   drops / changes  probability: percentage points, 1 decimal ("+30.4 pp"); logit: signed, 3 significant digits
//   map values       occlusion: the drop in its score's units (colour-bar ticks without the unit: the caption
//                    states it); gradient methods and activations: 3 significant digits
//   AUCs             fractions of the unit square, 3 decimals
// Anything with |x| < ZERO_BELOW (in the printed unit) prints as 0, so float noise (-1.01e-10) never shows.

/** Magnitudes below this print as zero. */
export const ZERO_BELOW = 5e-4;
const MINUS = "\u2212";

/**
 * A plain number with `digits` significant digits: "0.412", "−2.35", "1230"; "0" when |x| < ZERO_BELOW.
 * @param {number} value
 * @param {{digits?: number, signed?: boolean}} [options]  signed: "+" before positive numbers
 */
export function formatNumber(value, { digits = 3, signed = false } = {}) {
  if (value !== value) return "\u2013";
  if (!Number.isFinite(value)) return value > 0 ? "\u221e" : `${MINUS}\u221e`;
  if (Math.abs(value) < ZERO_BELOW) return "0";
  const text = Number(Math.abs(value).toPrecision(digits)).toString();
  return (value < 0 ? MINUS : signed ? "+" : "") + text;
}

/**
 * A fixed-decimals number ("30.4", "−2.0", "0.0" for |x| below half the last digit). No "-0.0".
 * @param {number} value
 * @param {number} decimals
 * @param {boolean} signed
 */
function fixed(value, decimals, signed) {
  if (value !== value) return "\u2013";
  const text = Math.abs(value).toFixed(decimals);
  if (Number(text) === 0) return text;
  return (value < 0 ? MINUS : signed ? "+" : "") + text;
}

/**
 * A class score in its output: probabilities as percent with 1 decimal, logits (and custom
 * scores) as numbers with 3 significant digits.
 * @param {number} value
 * @param {string} output  "probability", "logit", ...
 */
export function formatScore(value, output) {
  return output === "probability" ? `${fixed(value * 100, 1, false)}%` : formatNumber(value);
}

/**
 * A change of a score (a drop, or occluded minus unoccluded), signed: probabilities in
 * percentage points with 1 decimal ("+30.4 pp"), logits with 3 significant digits.
 * @param {number} value  in the score's own units (a probability difference is a fraction)
 * @param {string} output
 * @param {boolean} [unit]  append " pp" to probability changes
 */
export function formatChange(value, output, unit = true) {
  if (output !== "probability") return formatNumber(value, { signed: true });
  return fixed(value * 100, 1, true) + (unit ? " pp" : "");
}

/**
 * A map value: the occlusion drop in its score's units, or a gradient / activation magnitude.
 * @param {number} value
 * @param {string} method
 * @param {string} output  the map's score ("probability" or "logit")
 * @param {boolean} [unit]  with its unit ("pp") where it has one
 */
export function formatMapValue(value, method, output, unit = true) {
  return method === "occlusion" ? formatChange(value, output, unit) : formatNumber(value);
}

/**
 * Tick labels of a colour bar: occlusion drops in percentage points (1 decimal) or logits,
 * magnitudes with 2 significant digits; the unit is in the caption.
 * @param {number[]} ticks
 * @param {string} method
 * @param {string} output
 * @returns {string[]}
 */
export function tickLabels(ticks, method, output) {
  if (method !== "occlusion") return ticks.map((v) => formatNumber(v, { digits: 2 }));
  if (output === "probability") return ticks.map((v) => fixed(v * 100, 1, true));
  return ticks.map((v) => formatNumber(v, { digits: 2, signed: true }));
}

/**
 * "military uniform: 41.3% → 11.0% (−30.4 pp)" for the current class under the mask.
 * @param {{id: number, base: number, occluded: number} | undefined} target
 * @param {string} name
 * @param {string} output
 */
export function targetSummary(target, name, output) {
  if (!target) return "";
  const change = target.occluded - target.base;
  return `${name}: ${formatScore(target.base, output)} \u2192 ${formatScore(target.occluded, output)} (${formatChange(change, output)})`;
}

/** The methods in display order (as occlusion_widget.methods.METHODS). */
export const METHOD_ORDER = ["occlusion", "grad_cam", "saliency", "smoothgrad"];

/** @type {Record<string, string>} */
const TITLES = { occlusion: "Occlusion", grad_cam: "Grad-CAM", saliency: "Saliency", smoothgrad: "SmoothGrad" };

/** @type {Record<string, string>} */
const HEADINGS = { occlusion: "Occlusion sensitivity", grad_cam: "Grad-CAM", saliency: "Gradient saliency", smoothgrad: "SmoothGrad" };

/** @type {Record<string, string>} */
const HINTS = {
  occlusion: "How much the class score drops when a square around each pixel is masked",
  grad_cam: "Grad-CAM: a conv layer's channels weighted by the class gradient (coarse, class-specific)",
  saliency: "Gradient saliency: |d score / d pixel| (fine, noisy)",
  smoothgrad: "SmoothGrad: the gradient averaged over noisy copies of the image",
};

/**
 * @param {string} method
 * @returns {string}
 */
export function methodTitle(method) {
  return TITLES[method] ?? method;
}

/**
 * The widget's heading for a method.
 * @param {string} method
 * @returns {string}
 */
export function methodHeading(method) {
  return HEADINGS[method] ?? method;
}

/**
 * @param {string} method
 * @returns {string}
 */
export function methodHint(method) {
  return HINTS[method] ?? "";
}

/**
 * The caption under the colour bar, from the result's resolved parameters.
 * @param {string} method
 * @param {{output?: string, layer?: string | null, n_samples?: number | null}} params
 * @param {string} [occlusionOutput]  the occlusion score (before the first result arrives)
 */
export function mapCaption(method, params, occlusionOutput = "probability") {
  const output = mapOutput(method, params, occlusionOutput);
  const score = output === "logit" ? "logit" : "probability";
  if (method === "occlusion") return score === "probability" ? "drop in probability when occluded, percentage points" : "drop in logit when occluded";
  if (method === "grad_cam") return `Grad-CAM of the ${score}${params?.layer ? ` at ${params.layer}` : ""}`;
  if (method === "smoothgrad") return `|gradient| of the ${score}, mean of ${params?.n_samples ?? "n"} noisy copies`;
  return `|gradient| of the ${score}`;
}

/**
 * The score a map is in: its resolved output, else the method's default.
 * @param {string} method
 * @param {{output?: string} | null | undefined} params
 * @param {string} [occlusionOutput]
 */
export function mapOutput(method, params, occlusionOutput = "probability") {
  return params?.output ?? (method === "occlusion" ? occlusionOutput : "logit");
}

/**
 * Labels at the two ends of the colour bar: [top, bottom].
 * @param {boolean} signed
 * @returns {[string, string]}
 */
export function barEnds(signed) {
  return signed ? ["supports", "opposes"] : ["high", "low"];
}

/**
 * The hover read-out under the map.
 * @param {string} method
 * @param {number} value  the map's value under the cursor (NaN: not computed yet)
 * @param {number} peak  the map's largest value
 * @param {number} x
 * @param {number} y
 * @param {string} name  the class
 * @param {string} [output]  the map's score ("probability" or "logit")
 */
export function readoutText(method, value, peak, x, y, name, output = "probability") {
  if (value !== value) return `(${x}, ${y}): not computed yet`;
  if (method === "occlusion") return `(${x}, ${y}): occluding here changes ${name} by ${formatChange(-value, output)}`;
  const share = peak > 0 ? ` (${Math.round((value / peak) * 100)}% of the peak)` : "";
  return `(${x}, ${y}): ${methodTitle(method)} ${formatNumber(value)}${share} for ${name}`;
}

/**
 * The label of the button that moves the mask to the map's most important spot.
 * @param {string} method
 */
export function worstLabel(method) {
  return method === "occlusion" ? "Worst spot" : "Map peak";
}

/**
 * An AUC for the compare view: 3 decimals, or "…" while pending.
 * @param {number | null | undefined} value
 */
export function formatAUC(value) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(3) : "\u2026";
}

/**
 * What a compare panel says under its map: "computing…", an error, or the two AUCs.
 * @param {{status: string, curve_status: string, error?: string, deletion_auc?: number | null, insertion_auc?: number | null}} panel
 * @returns {{state: string, text: string}}
 */
export function panelStatus(panel) {
  if (panel.status === "error" || panel.curve_status === "error") return { state: "error", text: panel.error || "failed" };
  if (panel.status === "running") return { state: "running", text: "computing the map\u2026" };
  if (panel.status !== "done") return { state: panel.status, text: panel.status === "stopped" ? "stopped" : "waiting\u2026" };
  if (panel.curve_status === "running") return { state: "running", text: "scoring\u2026" };
  if (panel.curve_status !== "done") return { state: panel.curve_status, text: panel.curve_status === "stopped" ? "stopped" : "" };
  return { state: "done", text: "" };
}

/**
 * The compare view's summary line.
 * @param {{status?: string, done?: number, total?: number, label?: string | null, target?: number | null}} state
 */
export function compareSummary(state) {
  const what = state.label ?? (state.target !== null && state.target !== undefined ? `class ${state.target}` : "the current class");
  const head = `All four methods for ${what}`;
  if (state.status === "running") return `${head} \u2014 computing (${state.done ?? 0} of ${state.total ?? 8} done)`;
  if (state.status === "stopped") return `${head} \u2014 stopped`;
  return head;
}

/**
 * The method selector's buttons: which methods are offered, and which can be chosen. A
 * saved page (`available` given, e.g. by the standalone report) offers only the methods it
 * has maps for; without a kernel and without that list only the current one can be chosen.
 * @param {string} current
 * @param {boolean} kernel  whether a kernel answers
 * @param {string[] | null | undefined} available
 * @returns {{method: string, enabled: boolean}[]}
 */
export function offeredMethods(current, kernel, available) {
  const list = Array.isArray(available) ? METHOD_ORDER.filter((m) => available.includes(m)) : METHOD_ORDER;
  return list.map((method) => ({ method, enabled: method === current || kernel || Array.isArray(available) }));
}

/**
 * What each class tab shows: the class's unoccluded score, taken from the mask preview when it
 * knows that class (so tabs and preview speak the same unit), else the map's own score.
 * @param {{id: number, name: string, score: number}[]} classes
 * @param {string} output  the maps' score
 * @param {{output?: string, targets?: {id: number, base: number}[]} | null | undefined} preview
 * @returns {{text: string, title: string}[]}
 */
export function tabScores(classes, output, preview) {
  return classes.map((c) => {
    const known = preview?.output ? (preview.targets ?? []).find((t) => t.id === c.id) : undefined;
    const [score, unit] = known ? [known.base, /** @type {string} */ (preview?.output)] : [c.score, output];
    const text = formatScore(score, unit);
    return { text: unit === "probability" ? text : `${unit} ${text}`, title: `class ${c.id}: ${unit} ${text}` };
  });
}
