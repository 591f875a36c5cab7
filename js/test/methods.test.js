import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  setMethodTable, methodOrder, methodTitle, methodHeading, methodHint, isPerturbation, outputTrait, mapCaption, mapOutput,
  barEnds, readoutText, worstLabel, formatAUC, panelStatus, compareSummary, offeredMethods, tickLabels, formatMapValue,
  clipCaption, ordinal,
} from "../methods.js";
import { renderMethods } from "../ui.js";

/** A parameter entry as registry.browser_table() writes it. */
const param = (name, trait, kind = "choice") => ({ name, trait, kind, default: null, help: "", minimum: null, maximum: null, choices: [], nullable: false });
const method = (name, title, kind, signed, extra = {}) => ({
  name, title, heading: `${title} heading`, hint: `what ${title} shows`, kind, signed, streams: false,
  default_output: kind === "perturbation" ? "probability" : "logit", images_only: false,
  params: [param("output", kind === "perturbation" ? "output" : "gradient_output")], ...extra,
});
/** The kernel's five methods in its shape, and a made-up sixth one that no code here knows by name. */
const SIX = [
  method("occlusion", "Occlusion", "perturbation", true, { heading: "Occlusion sensitivity" }),
  method("grad_cam", "Grad-CAM", "gradient", false),
  method("saliency", "Saliency", "gradient", false),
  method("smoothgrad", "SmoothGrad", "gradient", false),
  method("integrated_gradients", "Integrated Gradients", "gradient", true),
  method("deconvnet", "Deconvnet", "gradient", true, { hint: "Deconvnet: the class score projected back through the ReLUs" }),
];

/** Just enough DOM for ui.js's h(): elements with attributes, children, listeners and a `disabled` property. */
class FakeElement {
  constructor(tag) {
    Object.assign(this, { tagName: tag.toUpperCase(), attributes: {}, children: [], listeners: {}, style: {}, disabled: false });
  }
  setAttribute(name, value) { this.attributes[name] = value; }
  getAttribute(name) { return this.attributes[name] ?? null; }
  addEventListener(type, fn) { this.listeners[type] = fn; }
  append(...nodes) { this.children.push(...nodes); }
  replaceChildren(...nodes) { this.children = nodes; }
  get textContent() { return this.children.map((c) => (typeof c === "string" ? c : c.textContent)).join(""); }
}

test("the table sets the order, titles, headings and hints; a made-up sixth method gets its own", () => {
  assert.equal(setMethodTable(SIX).length, 6);
  assert.deepEqual(methodOrder(), ["occlusion", "grad_cam", "saliency", "smoothgrad", "integrated_gradients", "deconvnet"]);
  assert.deepEqual(methodOrder().map(methodTitle), ["Occlusion", "Grad-CAM", "Saliency", "SmoothGrad", "Integrated Gradients", "Deconvnet"]);
  assert.equal(methodHeading("deconvnet"), "Deconvnet heading");
  assert.equal(methodHint("deconvnet"), "Deconvnet: the class score projected back through the ReLUs");
  assert.equal(methodHeading("occlusion"), "Occlusion sensitivity");
  assert.equal(methodTitle("unknown"), "unknown", "a name the table lacks shows as itself");
  assert.deepEqual(offeredMethods("deconvnet", true, undefined).map((o) => o.method), methodOrder());
  assert.deepEqual(offeredMethods("occlusion", false, ["deconvnet", "occlusion"]), [{ method: "occlusion", enabled: true }, { method: "deconvnet", enabled: true }]);
});

test("the sixth method's button, with its title, hint and pressed state", () => {
  setMethodTable(SIX);
  globalThis.document = /** @type {any} */ ({ createElement: (tag) => new FakeElement(tag) });
  try {
    const container = new FakeElement("div");
    const chosen = [];
    renderMethods(container, "deconvnet", offeredMethods("deconvnet", true, undefined), (m) => chosen.push(m));
    assert.deepEqual(container.children.map((b) => b.textContent), methodOrder().map(methodTitle));
    const button = container.children.find((b) => b.attributes["data-method"] === "deconvnet");
    assert.equal(button.attributes.title, "Deconvnet: the class score projected back through the ReLUs");
    assert.equal(button.attributes["aria-checked"], "true");
    assert.ok(button.attributes.class.includes("ow-method-active"));
    button.listeners.click();
    assert.deepEqual(chosen, ["deconvnet"]);
  } finally {
    delete globalThis.document;
  }
});

test("no built-in list: without a table no method is offered", () => {
  setMethodTable(undefined);
  assert.deepEqual(methodOrder(), []);
  assert.deepEqual(offeredMethods("occlusion", true, undefined), []);
  assert.equal(isPerturbation("occlusion"), false);
  setMethodTable(SIX);
  assert.equal(isPerturbation("occlusion"), true);
});

test("captions and formats follow the method's kind and sign, not its name", () => {
  setMethodTable(SIX);
  assert.equal(mapCaption("deconvnet", { output: "logit" }), "Deconvnet of the logit", "generic caption for a method without its own sentence");
  assert.equal(mapCaption("deconvnet", null), "Deconvnet of the logit", "its default output before a result arrives");
  assert.equal(mapCaption("integrated_gradients", { output: "probability" }), "attribution of the probability from the baseline");
  assert.equal(worstLabel("deconvnet"), "Map peak");
  // A signed attribution reads with its sign; a sequential one without.
  assert.equal(formatMapValue(-0.25, "deconvnet", "logit"), "\u22120.25");
  assert.equal(formatMapValue(0.25, "deconvnet", "logit"), "+0.25");
  assert.equal(formatMapValue(0.25, "saliency", "logit"), "0.25");
  assert.deepEqual(tickLabels([1, 0, -1], "deconvnet", "logit"), ["+1", "0", "\u22121"]);
  assert.equal(readoutText("deconvnet", -0.5, 1, 3, 4, "tabby", "logit"), "(3, 4): Deconvnet \u22120.5 (-50% of the peak) for tabby");
  // A perturbation method that is not called "occlusion" gets the drop wording.
  setMethodTable([method("rise", "RISE", "perturbation", true), ...SIX.slice(1)]);
  assert.ok(isPerturbation("rise") && !isPerturbation("occlusion"));
  assert.equal(mapCaption("rise", { output: "probability" }), "drop in probability when occluded, percentage points");
  assert.equal(worstLabel("rise"), "Worst spot");
  assert.equal(outputTrait("rise"), "output");
  assert.equal(outputTrait("grad_cam"), "gradient_output");
  assert.equal(mapOutput("rise", null, undefined), "probability", "the method's default output");
});

test("the real table from occlusion_widget.methods.registry.browser_table()", { skip: !process.env.OW_METHODS && "OW_METHODS is not set (tests/test_js.py sets it)" }, () => {
  const table = JSON.parse(readFileSync(/** @type {string} */ (process.env.OW_METHODS), "utf8"));
  setMethodTable(table);
  assert.deepEqual(methodOrder(), table.map((m) => m.name));
  for (const m of table) {
    assert.equal(methodTitle(m.name), m.title);
    assert.ok(mapCaption(m.name, null).length > 0);
    assert.ok(outputTrait(m.name), `${m.name} has an output trait`);
  }
  assert.equal(methodOrder().filter(isPerturbation).join(), "occlusion");
  assert.equal(compareSummary({ status: "done", label: "tabby" }), `All ${table.length} methods for tabby`);
});

test("colour-bar captions say what the map measures", () => {
  setMethodTable(SIX);
  assert.equal(mapCaption("occlusion", { output: "probability" }), "drop in probability when occluded, percentage points");
  assert.equal(mapCaption("occlusion", undefined, "logit"), "drop in logit when occluded");
  assert.equal(mapCaption("grad_cam", { output: "logit", layer: "layer4" }), "Grad-CAM of the logit at layer4");
  assert.equal(mapCaption("saliency", { output: "logit" }), "|gradient| of the logit");
  assert.match(mapCaption("smoothgrad", { output: "probability", n_samples: 25 }), /probability, mean of 25 noisy copies/);
  assert.deepEqual(barEnds(true), ["supports", "opposes"]);
  assert.deepEqual(barEnds(false), ["high", "low"]);
});

test("a clipped scale says where it saturates", () => {
  assert.equal(clipCaption(99), " (clipped at the 99th percentile)");
  assert.equal(clipCaption(99.9), " (clipped at the 99.9th percentile)");
  assert.equal(clipCaption(null), "");
  assert.equal(clipCaption(100), "", "the 100th percentile is the maximum: nothing is clipped");
  assert.deepEqual([1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 95].map(ordinal), ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "95th"]);
});

test("hover read-outs: signed drop for occlusion, magnitude and share of the peak otherwise", () => {
  setMethodTable(SIX);
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
  setMethodTable(SIX);
  const base = { status: "done", curve_status: "done", error: "" };
  assert.deepEqual(panelStatus(base), { state: "done", text: "" });
  assert.equal(panelStatus({ ...base, status: "running", curve_status: "pending" }).text, "computing the map\u2026");
  assert.equal(panelStatus({ ...base, curve_status: "running" }).text, "scoring\u2026");
  assert.equal(panelStatus({ ...base, status: "pending", curve_status: "pending" }).text, "waiting\u2026");
  assert.deepEqual(panelStatus({ ...base, status: "error", error: "layer=None: boom" }), { state: "error", text: "layer=None: boom" });
  assert.equal(panelStatus({ ...base, status: "stopped", curve_status: "stopped" }).text, "stopped");
  assert.match(compareSummary({ status: "running", done: 3, total: 8, label: "tabby" }), /tabby .*3 of 8/);
  assert.equal(compareSummary({ status: "done", label: null, target: 5 }), "All 6 methods for class 5");
  assert.equal(compareSummary({ status: "running", label: "x", panels: [{}, {}] }), "All 2 methods for x \u2014 computing (0 of 4 done)");
});
