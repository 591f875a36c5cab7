// One number format per quantity (js/methods.js): scores, changes, map values, ticks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { formatNumber, formatScore, formatChange, formatMapValue, tickLabels, targetSummary, tabScores, offeredMethods, ZERO_BELOW, setMethodTable } from "../methods.js";

// The kernel's table in its shape (registry.browser_table()), the fields these formats read.
const spec = (name, kind, signed) => ({ name, title: name, heading: name, hint: "", kind, signed, streams: false,
  default_output: kind === "perturbation" ? "probability" : "logit", images_only: false, params: [] });
setMethodTable([spec("occlusion", "perturbation", true), spec("grad_cam", "gradient", false), spec("saliency", "gradient", false), spec("smoothgrad", "gradient", false)]);

const MINUS = "\u2212";

test("plain numbers: 3 significant digits, a real minus sign, float noise prints as 0", () => {
  assert.equal(formatNumber(0.41234), "0.412");
  assert.equal(formatNumber(-2.3456), `${MINUS}2.35`);
  assert.equal(formatNumber(12345), "12300");
  assert.equal(formatNumber(-1.01e-10), "0", "no scientific notation for noise");
  assert.equal(formatNumber(ZERO_BELOW * 0.99), "0");
  assert.equal(formatNumber(ZERO_BELOW * 1.01), "0.000505");
  assert.equal(formatNumber(0.5, { signed: true }), "+0.5");
  assert.equal(formatNumber(NaN), "\u2013");
  for (const v of [1e-9, -3e-7, 1.23e-5, 0.123456, 98765.4321, -0.000777]) assert.doesNotMatch(formatNumber(v), /e/, String(v));
});

test("probabilities are percent with one decimal, logits plain numbers", () => {
  assert.equal(formatScore(0.41234, "probability"), "41.2%");
  assert.equal(formatScore(0.07, "probability"), "7.0%");
  assert.equal(formatScore(0.9999, "probability"), "100.0%");
  assert.equal(formatScore(-1e-10, "probability"), "0.0%", "no -0.0%");
  assert.equal(formatScore(2.3456, "logit"), "2.35");
  assert.equal(formatScore(-1.01e-10, "logit"), "0");
});

test("changes of a probability are percentage points, of a logit signed numbers", () => {
  assert.equal(formatChange(-0.304, "probability"), `${MINUS}30.4 pp`);
  assert.equal(formatChange(0.0123, "probability"), "+1.2 pp");
  assert.equal(formatChange(-1e-10, "probability"), "0.0 pp");
  assert.equal(formatChange(0.304, "probability", false), "+30.4");
  assert.equal(formatChange(-1.5, "logit"), `${MINUS}1.5`);
  assert.equal(formatChange(1e-12, "logit"), "0");
  assert.equal(formatMapValue(0.25, "occlusion", "probability"), "+25.0 pp");
  assert.equal(formatMapValue(0.25, "grad_cam", "logit"), "0.25");
});

test("the preview summary uses the same units as the score lists: no mix of percent and fractions", () => {
  const text = targetSummary({ id: 1, base: 0.41, occluded: 0.106 }, "tabby", "probability");
  assert.equal(text, `tabby: 41.0% \u2192 10.6% (${MINUS}30.4 pp)`);
  assert.doesNotMatch(text, /0\.\d{3}/, "no fraction next to the percentages");
  assert.equal(targetSummary({ id: 1, base: 3.2, occluded: 1.1 }, "tabby", "logit"), `tabby: 3.2 \u2192 1.1 (${MINUS}2.1)`);
  assert.equal(targetSummary(undefined, "x", "logit"), "");
});

test("colour-bar ticks: occlusion drops in percentage points, magnitudes with 2 digits, no noise", () => {
  assert.deepEqual(tickLabels([0.36, 0.18, 0, -0.18, -0.36], "occlusion", "probability"), ["+36.0", "+18.0", "0.0", `${MINUS}18.0`, `${MINUS}36.0`]);
  assert.deepEqual(tickLabels([2, 1, 0, -1, -2], "occlusion", "logit"), ["+2", "+1", "0", `${MINUS}1`, `${MINUS}2`]);
  assert.deepEqual(tickLabels([0.0123, 0.00922, 1e-11, 0], "grad_cam", "logit"), ["0.012", "0.0092", "0", "0"]);
});

test("class tabs take the preview's unoccluded score, so tabs and preview use one unit", () => {
  const classes = [{ id: 7, name: "a", score: 12.5 }, { id: 9, name: "b", score: 3.25 }];
  const preview = { output: "probability", targets: [{ id: 7, base: 0.41 }] };
  const [a, b] = tabScores(classes, "logit", preview);
  assert.equal(a.text, "41.0%", "from the preview, in percent");
  assert.equal(b.text, "logit 3.25", "not in the preview: its own score, with its unit named");
  assert.equal(tabScores([{ id: 7, name: "a", score: 0.5 }], "probability", null)[0].text, "50.0%");
});

test("methods offered: all with a kernel; without one only the current; a saved page's list when given", () => {
  const enabled = (list) => list.filter((m) => m.enabled).map((m) => m.method);
  assert.deepEqual(enabled(offeredMethods("occlusion", true, undefined)), ["occlusion", "grad_cam", "saliency", "smoothgrad"]);
  assert.deepEqual(enabled(offeredMethods("grad_cam", false, undefined)), ["grad_cam"]);
  const saved = offeredMethods("occlusion", false, ["saliency", "occlusion"]);
  assert.deepEqual(saved.map((m) => m.method), ["occlusion", "saliency"], "only those, in the usual order");
  assert.deepEqual(enabled(saved), ["occlusion", "saliency"]);
});
