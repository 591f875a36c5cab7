// Controls for every parameter, bound to the widget model's traits.

import { h, renderLayerOptions } from "./ui.js";
import { isPerturbation, ordinal } from "./methods.js";

/** The display control's percentiles (any other value set from Python shows as one more option). */
const PERCENTILES = [99.9, 99, 98, 95];

const MASK_VALUES = [
  ["auto", "auto (channel means)"],
  ["blur", "blur"],
  ["0", "black (0)"],
  ["0.5", "grey (0.5)"],
  ["1", "white (1)"],
];

/**
 * Run `fn` when a typed value is confirmed: Enter, or leaving the field.
 * @param {HTMLInputElement} input
 * @param {() => void} fn
 */
function onCommit(input, fn) {
  input.addEventListener("change", fn);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") fn();
  });
}

/**
 * @typedef {object} ControlHooks
 * @property {() => [number, number]} imageShape  (H, W) of the input
 * @property {(name: string, value: number | null) => void} onInput  a slider moves (null: released)
 */

/**
 * Build the parameter and display controls in `container` and keep them in
 * step with the model. Changing a control sets the trait and saves it, which
 * makes the kernel recompute (display controls never reach the kernel's maths).
 * @param {any} model
 * @param {HTMLElement} container
 * @param {ControlHooks} hooks
 * @returns {{sync: () => void, setKernel: (alive: boolean) => void, dispose: () => void}}
 */
export function buildControls(model, container, hooks) {
  /** @type {(() => void)[]} */
  const syncers = [];
  /** @type {(() => void)[]} the ones that depend on `layer_data` (which changes often while computing) */
  const layerSyncers = [];
  const commit = (name, value) => {
    model.set(name, value);
    model.save_changes();
  };
  const row = (label, hint, ...inputs) =>
    h("label", { class: "ow-control", title: hint }, h("span", { class: "ow-control-label" }, label), ...inputs);

  // Mask size and stride: "auto" or pixels (slider + number box for exact or out-of-range values).
  // "auto" shows what the kernel resolved it to (resolved_params), never a guess made here.
  const pair = (name, label, minimum, hint) => {
    const auto = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", class: "ow-auto", "data-param": `${name}-auto` }));
    const range = /** @type {HTMLInputElement} */ (h("input", { type: "range", min: String(minimum), step: "1", "data-param": name }));
    const number = /** @type {HTMLInputElement} */ (h("input", { type: "number", class: "ow-number", step: "1", "data-param": `${name}-number` }));
    const show = (v) => {
      range.value = String(v);
      number.value = String(v);
    };
    range.addEventListener("input", () => {
      auto.checked = false;
      number.value = range.value;
      hooks.onInput(name, Number(range.value));
    });
    range.addEventListener("change", () => {
      hooks.onInput(name, null);
      commit(name, Math.round(Number(range.value)));
    });
    onCommit(number, () => {
      const v = Number(number.value);
      if (number.value === "" || !Number.isFinite(v)) return sync();
      auto.checked = false;
      commit(name, Math.round(v));
    });
    auto.addEventListener("change", () => {
      if (auto.checked) commit(name, "auto");
      else commit(name, Math.round(Number(range.value)));
    });
    const sync = () => {
      const shape = hooks.imageShape();
      range.max = String(Math.max(shape[0], shape[1]));
      const value = model.get(name);
      auto.checked = value === "auto";
      const resolved = model.get("resolved_params")?.[name];
      const v = value === "auto" ? resolved : Array.isArray(value) ? value : [value];
      if (Array.isArray(v) && typeof v[0] === "number") show(v[0]);
    };
    syncers.push(sync);
    return row(label, hint, range, number, h("span", { class: "ow-auto-label" }, auto, "auto"));
  };

  const select = (name, label, options, hint, parse = (s) => s) => {
    const node = /** @type {HTMLSelectElement} */ (h("select", { "data-param": name }));
    const base = options.map(([value, text]) => h("option", { value }, text));
    node.addEventListener("change", () => commit(name, parse(node.value)));
    const sync = () => {
      const value = model.get(name);
      const key = Array.isArray(value) ? JSON.stringify(value) : String(value);
      const known = options.some(([v]) => v === key);
      node.replaceChildren(...base, ...(known ? [] : [h("option", { value: key }, `custom (${key})`)]));
      node.value = key;
    };
    syncers.push(sync);
    return row(label, hint, node);
  };

  const checkbox = (name, label, hint) => {
    const node = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", "data-param": name }));
    node.addEventListener("change", () => commit(name, node.checked));
    syncers.push(() => (node.checked = Boolean(model.get(name))));
    return row(label, hint, node);
  };

  const topK = (() => {
    const node = /** @type {HTMLInputElement} */ (h("input", { type: "number", class: "ow-number", min: "1", max: "20", step: "1", "data-param": "top_k" }));
    const note = h("span", { class: "ow-note" });
    onCommit(node, () => {
      const v = Math.round(Number(node.value));
      if (Number.isFinite(v) && node.value !== "") commit("top_k", v);
    });
    syncers.push(() => {
      node.value = String(model.get("top_k"));
      const targets = model.get("targets");
      note.textContent = Array.isArray(targets) ? `targets ${targets.join(", ")}` : "";
    });
    return row("Top-k classes", "How many of the best classes get a map (replaces explicit targets)", node, note);
  })();

  const opacity = (() => {
    const node = /** @type {HTMLInputElement} */ (h("input", { type: "range", min: "0", max: "1", step: "0.05", "data-param": "opacity" }));
    node.addEventListener("input", () => commit("opacity", Number(node.value)));
    syncers.push(() => (node.value = String(model.get("opacity"))));
    return row("Opacity", "Heatmap opacity (drawn in the browser)", node);
  })();

  // Display only: where the colour scale saturates (the `percentile` trait, view state; null: the largest value).
  const percentile = (() => {
    const node = /** @type {HTMLSelectElement} */ (h("select", { "data-param": "percentile" }));
    const known = ["", ...PERCENTILES.map(String)];
    const option = (value) => h("option", { value }, value === "" ? "none" : `${ordinal(Number(value))} percentile`);
    node.addEventListener("change", () => commit("percentile", node.value === "" ? null : Number(node.value)));
    syncers.push(() => {
      const value = model.get("percentile");
      const key = typeof value === "number" ? String(value) : "";
      node.replaceChildren(...known.map(option), ...(known.includes(key) ? [] : [option(key)]));
      node.value = key;
    });
    return row("Clip at", "Saturate the colours at this percentile of the map's magnitude, so that a few extreme values do not wash out the rest (display only)", node);
  })();

  const colormap = (name, tables, label, hint) => {
    const node = /** @type {HTMLSelectElement} */ (h("select", { "data-param": name }));
    node.addEventListener("change", () => commit(name, node.value));
    syncers.push(() => {
      const names = Object.keys(model.get(tables) ?? {});
      if (node.options.length !== names.length) node.replaceChildren(...names.map((n) => h("option", { value: n }, n)));
      node.value = model.get(name);
    });
    return row(label, hint, node);
  };

  // A number committed on Enter or blur, parsed by `parse` (NaN: ignored, the field is reset).
  const numberBox = (name, label, hint, attrs, parse) => {
    const node = /** @type {HTMLInputElement} */ (h("input", { type: "number", class: "ow-number", "data-param": name, ...attrs }));
    onCommit(node, () => {
      const v = parse(node.value);
      if (node.value === "" || !Number.isFinite(v)) return (node.value = String(model.get(name)));
      commit(name, v);
    });
    syncers.push(() => (node.value = String(model.get(name))));
    return row(label, hint, node);
  };

  const camLayer = (() => {
    const node = /** @type {HTMLSelectElement} */ (h("select", { "data-param": "gradcam_layer", class: "ow-layer-select" }));
    node.addEventListener("change", () => commit("gradcam_layer", node.value === "" ? null : node.value));
    const sync = () => renderLayerOptions(node, model.get("layer_data"), model.get("gradcam_layer"));
    syncers.push(sync);
    layerSyncers.push(sync);
    return row("Grad-CAM layer", "The layer whose channels Grad-CAM weights (the list appears once it is traced)", node);
  })();

  const groups = {
    occlusion: h(
      "fieldset",
      { class: "ow-group", "data-group": "occlusion" },
      h("legend", {}, "Occlusion"),
      pair("mask_size", "Mask size", 2, "Side of the occluding square, in pixels"),
      pair("stride", "Stride", 2, "Step between mask positions, in pixels (small = slow)"),
      select("mask_value", "Mask value", MASK_VALUES, "What occluded pixels become (also the fill of the compare view's deletion curves)", (s) => (s === "auto" || s === "blur" ? s : s.startsWith("[") ? JSON.parse(s) : Number(s))),
      checkbox("mask_clipping", "Clip at edges", "On: masks centred on the lattice, cut at the border; off: full-size masks inside"),
      select("upsampling", "Upsampling", [["bicubic", "bicubic"], ["nearest", "nearest"], ["none", "none (grid)"]], "How the grid of positions becomes a map"),
      select("output", "Score", [["probability", "probability"], ["logit", "logit"]], "The score whose drop is mapped"),
      topK,
    ),
    gradients: h(
      "fieldset",
      { class: "ow-group", "data-group": "gradients" },
      h("legend", {}, "Gradient methods"),
      select("gradient_output", "Score", [["logit", "logit"], ["probability", "probability"]], "The score differentiated (the logit is customary)"),
      camLayer,
      numberBox("n_samples", "SmoothGrad samples", "Noisy copies averaged", { min: "1", max: "500", step: "1" }, (s) => Math.round(Number(s))),
      numberBox("noise_level", "SmoothGrad noise", "Noise sd as a fraction of the image's value range (0.1-0.2 is usual)", { min: "0", max: "1", step: "0.05" }, Number),
    ),
  };
  syncers.push(() => {
    const gradient = !isPerturbation(model.get("method"));
    groups.occlusion.classList.toggle("ow-group-active", !gradient);
    groups.gradients.classList.toggle("ow-group-active", gradient);
  });

  container.replaceChildren(
    groups.occlusion,
    groups.gradients,
    h(
      "fieldset",
      { class: "ow-group" },
      h("legend", {}, "Display"),
      opacity,
      percentile,
      colormap("colormap", "colormaps", "Signed maps", "Diverging colour scale, centred on 0 (occlusion)"),
      colormap("sequential_colormap", "sequential_colormaps", "Non-negative maps", "Sequential colour scale from 0 (gradient methods, layer activations)"),
    ),
  );

  const sync = () => syncers.forEach((f) => f());
  const names = ["mask_size", "stride", "mask_value", "mask_clipping", "upsampling", "output", "top_k", "targets", "opacity", "colormap",
    "colormaps", "sequential_colormap", "sequential_colormaps", "resolved_params", "image_png", "method", "gradient_output",
    "gradcam_layer", "n_samples", "noise_level", "percentile", "methods_table"];
  const syncLayers = () => layerSyncers.forEach((f) => f());
  for (const name of names) model.on(`change:${name}`, sync);
  model.on("change:layer_data", syncLayers);
  sync();
  return {
    sync,
    // Without a kernel nothing can be recomputed: the parameter groups are disabled (display stays).
    setKernel: (alive) => {
      for (const group of Object.values(groups)) /** @type {HTMLFieldSetElement} */ (group).disabled = !alive;
    },
    dispose: () => {
      for (const name of names) model.off(`change:${name}`, sync);
      model.off("change:layer_data", syncLayers);
    },
  };
}
