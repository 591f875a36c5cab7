// The downloaded figure of what the widget shows: the map (or every compare panel) with colour bars and titles.

import { h } from "./ui.js";
import { drawFigure } from "./paint.js";
import { barEnds, mapCaption, methodTitle, tabScores } from "./methods.js";

/**
 * The figure of what is shown: the map (or, with the compare view open, every method's
 * panel with its AUCs), colour bars with their numbers, and a title with class, score and method.
 * @param {any} view  the OcclusionView
 * @param {number} displaySize  the main canvas's largest side, CSS pixels
 * @returns {HTMLCanvasElement}
 */
export function viewFigure(view, displaySize) {
  const m = view.model;
  const current = (m.get("classes") || [])[view.selected];
  const output = m.get("resolved_params")?.output ?? view.outputOf(m.get("method"));
  const score = current ? ` \u00b7 ${tabScores([current], output, view.shownPreview)[0].text}` : "";
  const title = `${current?.name ?? "map"}${score}`;
  const method = view.maps ? view.maps.method : m.get("method");
  const ratio = typeof devicePixelRatio === "number" ? Math.min(devicePixelRatio, 2) : 1;
  const [height, width] = view.shape;
  if (view.compare.open) {
    const size = 224 / Math.max(height, width);
    return drawFigure({ title, subtitle: `${view.compare.summary.textContent} \u00b7 deletion AUC: lower is better, insertion AUC: higher is better`,
      imageW: width * size, imageH: height * size, columns: 4, panels: view.compare.figure }, ratio);
  }
  const signed = view.maps ? view.maps.signed : true;
  const ends = barEnds(signed);
  const caption = view.caption ?? mapCaption(method, m.get("resolved_params"), view.outputOf(method));
  const size = displaySize / Math.max(height, width);
  return drawFigure({ title, subtitle: `${methodTitle(method)} \u00b7 ${caption} \u00b7 top: ${ends[0]}, bottom: ${ends[1]}`,
    imageW: width * size, imageH: height * size, panels: [{ source: view.ui.canvas, lut: view.lut(signed), ticks: view.ticks ?? [] }] }, ratio);
}

/** @param {any} view @param {HTMLCanvasElement} figure */
export function downloadFigure(view, figure) {
  const name = ((view.model.get("classes") || [])[view.selected]?.name ?? "map").replace(/[^\w-]+/g, "_");
  const method = view.compare.open ? "compare" : view.maps ? view.maps.method : view.model.get("method");
  const link = h("a", { href: figure.toDataURL("image/png"), download: `${method}_${name}.png` });
  document.body.append(link);
  link.click();
  link.remove();
}
