// Words for the four methods: titles, colour-bar captions, hover read-outs, AUC labels. Pure.

import { formatValue, formatMagnitude } from "./colormap.js";

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
  const output = params?.output ?? (method === "occlusion" ? occlusionOutput : "logit");
  const score = output === "logit" ? "logit" : "probability";
  if (method === "occlusion") return `drop in ${score} when occluded`;
  if (method === "grad_cam") return `Grad-CAM of the ${score}${params?.layer ? ` at ${params.layer}` : ""}`;
  if (method === "smoothgrad") return `|gradient| of the ${score}, mean of ${params?.n_samples ?? "n"} noisy copies`;
  return `|gradient| of the ${score}`;
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
 */
export function readoutText(method, value, peak, x, y, name) {
  if (value !== value) return `not computed yet at (${x}, ${y})`;
  if (method === "occlusion") return `${formatValue(value)} at (${x}, ${y}) \u2014 occluding here changes ${name} by ${formatValue(-value)}`;
  const share = peak > 0 ? ` (${Math.round((value / peak) * 100)}% of the peak)` : "";
  return `${formatMagnitude(value)} at (${x}, ${y})${share} \u2014 ${methodTitle(method)} for ${name}`;
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
