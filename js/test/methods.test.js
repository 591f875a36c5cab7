import { test } from "node:test";
import assert from "node:assert/strict";
import { METHOD_ORDER, methodTitle, methodHeading, mapCaption, barEnds, readoutText, worstLabel, formatAUC, panelStatus, compareSummary } from "../methods.js";

test("the four methods in the library's order, with titles", () => {
  assert.deepEqual(METHOD_ORDER, ["occlusion", "grad_cam", "saliency", "smoothgrad"]);
  assert.deepEqual(METHOD_ORDER.map(methodTitle), ["Occlusion", "Grad-CAM", "Saliency", "SmoothGrad"]);
  assert.equal(methodTitle("other"), "other");
  assert.equal(methodHeading("occlusion"), "Occlusion sensitivity");
  assert.equal(methodHeading("saliency"), "Gradient saliency");
});

test("colour-bar captions say what the map measures", () => {
  assert.equal(mapCaption("occlusion", { output: "probability" }), "drop in probability when occluded, percentage points");
  assert.equal(mapCaption("occlusion", undefined, "logit"), "drop in logit when occluded");
  assert.equal(mapCaption("grad_cam", { output: "logit", layer: "layer4" }), "Grad-CAM of the logit at layer4");
  assert.equal(mapCaption("saliency", { output: "logit" }), "|gradient| of the logit");
  assert.match(mapCaption("smoothgrad", { output: "probability", n_samples: 25 }), /probability, mean of 25 noisy copies/);
  assert.deepEqual(barEnds(true), ["supports", "opposes"]);
  assert.deepEqual(barEnds(false), ["high", "low"]);
});

test("hover read-outs: signed drop for occlusion, magnitude and share of the peak otherwise", () => {
  assert.equal(readoutText("occlusion", 0.25, 0.5, 3, 4, "tabby"), "(3, 4): occluding here changes tabby by \u221225.0 pp");
  assert.equal(readoutText("occlusion", -0.5, 0.5, 3, 4, "tabby", "logit"), "(3, 4): occluding here changes tabby by +0.5");
  assert.equal(readoutText("grad_cam", 0.25, 0.5, 3, 4, "tabby"), "(3, 4): Grad-CAM 0.25 (50% of the peak) for tabby");
  assert.equal(readoutText("saliency", NaN, 1, 0, 0, "x"), "(0, 0): not computed yet");
  assert.equal(worstLabel("occlusion"), "Worst spot");
  assert.equal(worstLabel("smoothgrad"), "Map peak");
});

test("AUCs show three decimals, or an ellipsis while pending", () => {
  assert.equal(formatAUC(0.12345), "0.123");
  assert.equal(formatAUC(null), "\u2026");
  assert.equal(formatAUC(undefined), "\u2026");
});

test("a compare panel's status line", () => {
  const base = { status: "done", curve_status: "done", error: "" };
  assert.deepEqual(panelStatus(base), { state: "done", text: "" });
  assert.equal(panelStatus({ ...base, status: "running", curve_status: "pending" }).text, "computing the map\u2026");
  assert.equal(panelStatus({ ...base, curve_status: "running" }).text, "scoring\u2026");
  assert.equal(panelStatus({ ...base, status: "pending", curve_status: "pending" }).text, "waiting\u2026");
  assert.deepEqual(panelStatus({ ...base, status: "error", error: "layer=None: boom" }), { state: "error", text: "layer=None: boom" });
  assert.equal(panelStatus({ ...base, status: "stopped", curve_status: "stopped" }).text, "stopped");
  assert.match(compareSummary({ status: "running", done: 3, total: 8, label: "tabby" }), /tabby .*3 of 8/);
  assert.equal(compareSummary({ status: "done", label: null, target: 5 }), "All four methods for class 5");
});
