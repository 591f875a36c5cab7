// Words and numbers: the methods' titles (from the kernel's method table), colour-bar captions, hover
// read-outs, and the one number format per quantity that every view uses. Pure.

// --- numbers: one format per quantity -----------------------------------------------------
//   class scores     probability: percent, 1 decimal ("41.3%"); logit: 3 significant digits ("2.35")
//   drops / changes  probability: percentage points, 1 decimal ("+30.4 pp"); logit: signed, 3 significant digits
//   map values       perturbation methods (occlusion): the drop in its score's units (colour-bar ticks without
//                    the unit: the caption states it); other methods and activations: 3 significant digits,
//                    with a sign for signed methods (Integrated Gradients)
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
  if (isPerturbation(method)) return formatChange(value, output, unit);
  return formatNumber(value, { signed: Boolean(BY_NAME.get(method)?.signed) });
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
  const signed = Boolean(BY_NAME.get(method)?.signed);
  if (!isPerturbation(method)) return ticks.map((v) => formatNumber(v, { digits: 2, signed }));
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

// --- the method registry: occlusion_widget.methods.registry.browser_table(), the `methods_table` trait ------

/**
 * One parameter of a method as the kernel describes it (MethodParam.as_json()).
 * @typedef {object} MethodParamSpec
 * @property {string} name  the function's keyword
 * @property {string} trait  the widget trait that feeds it
 * @property {string} kind  "int", "float", "bool", "choice", "size", "fill", "baseline", "layer"
 * @property {unknown} default
 * @property {string} help
 * @property {number | null} minimum
 * @property {number | null} maximum
 * @property {unknown[]} choices
 * @property {boolean} nullable
 */

/**
 * One method (registry.browser_table()).
 * @typedef {object} MethodSpec
 * @property {string} name
 * @property {string} title  button and panel title
 * @property {string} heading  the widget's heading
 * @property {string} hint  one-line explanation (tooltip)
 * @property {"perturbation" | "gradient"} kind
 * @property {boolean} signed  maps have both signs (diverging scale)
 * @property {boolean} streams
 * @property {string} default_output  the score explained by default
 * @property {boolean} images_only
 * @property {MethodParamSpec[]} params
 */

/** @type {MethodSpec[]} */
let TABLE = [];
/** @type {Map<string, MethodSpec>} */
let BY_NAME = new Map();

/**
 * Use the kernel's method table (the `methods_table` trait, also in a saved notebook's widget state) for
 * every lookup below; widget.js calls it before the first paint. No built-in list: the kernel is the one
 * source of which methods exist.
 * @param {MethodSpec[] | null | undefined} table
 * @returns {MethodSpec[]}  the table in use
 */
export function setMethodTable(table) {
  TABLE = Array.isArray(table) ? table.filter((m) => m && typeof m.name === "string") : [];
  BY_NAME = new Map(TABLE.map((m) => [m.name, m]));
  return TABLE;
}

/** The methods in display order. @returns {string[]} */
export function methodOrder() {
  return TABLE.map((m) => m.name);
}

/** @param {string} method @returns {MethodSpec | undefined} */
export function methodSpec(method) {
  return BY_NAME.get(method);
}

/** Whether a method's map is a score drop under a perturbation (occlusion), not an attribution. @param {string} method */
export function isPerturbation(method) {
  return BY_NAME.get(method)?.kind === "perturbation";
}

/**
 * The widget trait holding the score a method explains ("output" for occlusion, "gradient_output" for the
 * gradient methods): the trait of its `output` parameter; null when it has none.
 * @param {string} method
 * @returns {string | null}
 */
export function outputTrait(method) {
  return BY_NAME.get(method)?.params.find((p) => p.name === "output")?.trait ?? null;
}

/**
 * @param {string} method
 * @returns {string}
 */
export function methodTitle(method) {
  return BY_NAME.get(method)?.title ?? method;
}

/**
 * The widget's heading for a method.
 * @param {string} method
 * @returns {string}
 */
export function methodHeading(method) {
  return BY_NAME.get(method)?.heading ?? method;
}

/**
 * @param {string} method
 * @returns {string}
 */
export function methodHint(method) {
  return BY_NAME.get(method)?.hint ?? "";
}

/**
 * Colour-bar captions of the methods that have their own sentence ({score}: "logit" or "probability");
 * any other method gets "<title> of the <score>".
 * @type {Record<string, string>}
 */
const CAPTIONS = {
  grad_cam: "Grad-CAM of the {score}",
  saliency: "|gradient| of the {score}",
  smoothgrad: "|gradient| of the {score}",
  integrated_gradients: "attribution of the {score} from the baseline",
};

/**
 * The caption under the colour bar, from the result's resolved parameters (the layer and the number of
 * noisy copies are named when the result has them).
 * @param {string} method
 * @param {{output?: string, layer?: string | null, n_samples?: number | null} | null | undefined} params
 * @param {string} [fallbackOutput]  the value of the method's output trait (before the first result arrives)
 */
export function mapCaption(method, params, fallbackOutput) {
  const output = mapOutput(method, params, fallbackOutput);
  const score = output === "logit" ? "logit" : "probability";
  if (isPerturbation(method)) return score === "probability" ? "drop in probability when occluded, percentage points" : "drop in logit when occluded";
  const sentence = (CAPTIONS[method] ?? `${methodTitle(method)} of the {score}`).replace("{score}", score);
  const layer = params?.layer ? ` at ${params.layer}` : "";
  const copies = typeof params?.n_samples === "number" ? `, mean of ${params.n_samples} noisy copies` : "";
  return sentence + layer + copies;
}

/**
 * The score a map is in: its resolved output, else the method's output trait, else the method's default.
 * @param {string} method
 * @param {{output?: string} | null | undefined} params
 * @param {string | null} [fallbackOutput]
 * @returns {string}
 */
export function mapOutput(method, params, fallbackOutput) {
  return params?.output ?? fallbackOutput ?? BY_NAME.get(method)?.default_output ?? "logit";
}

/**
 * "99th", "99.9th", "1st", "2nd", "3rd", "11th": a percentile in words.
 * @param {number} p
 */
export function ordinal(p) {
  const whole = Math.abs(p) % 100;
  const suffix = Number.isInteger(p) && !(whole >= 11 && whole <= 13) ? ({ 1: "st", 2: "nd", 3: "rd" })[whole % 10] ?? "th" : "th";
  return `${p}${suffix}`;
}

/**
 * What the colour-bar caption adds when the scale saturates at a percentile: " (clipped at the 99th percentile)".
 * @param {number | null | undefined} percentile
 */
export function clipCaption(percentile) {
  return typeof percentile === "number" && percentile < 100 ? ` (clipped at the ${ordinal(percentile)} percentile)` : "";
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
  if (isPerturbation(method)) return `(${x}, ${y}): occluding here changes ${name} by ${formatChange(-value, output)}`;
  const share = peak > 0 ? ` (${Math.round((value / peak) * 100)}% of the peak)` : "";
  return `(${x}, ${y}): ${methodTitle(method)} ${formatMapValue(value, method, output)}${share} for ${name}`;
}

/**
 * The label of the button that moves the mask to the map's most important spot.
 * @param {string} method
 */
export function worstLabel(method) {
  return isPerturbation(method) ? "Worst spot" : "Map peak";
}

/**
 * The tooltip of that button.
 * @param {string} method
 */
export function worstHint(method) {
  return isPerturbation(method) ? "Move the mask to where it lowers the current class most" : "Move the mask to the map's peak";
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
 * @param {{status?: string, done?: number, total?: number, label?: string | null, target?: number | null, panels?: unknown[]}} state
 */
export function compareSummary(state) {
  const what = state.label ?? (state.target !== null && state.target !== undefined ? `class ${state.target}` : "the current class");
  const count = state.panels?.length ?? TABLE.length;
  const head = `All ${count} methods for ${what}`;
  if (state.status === "running") return `${head} \u2014 computing (${state.done ?? 0} of ${state.total ?? 2 * count} done)`;
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
  const order = methodOrder();
  const list = Array.isArray(available) ? order.filter((m) => available.includes(m)) : order;
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
