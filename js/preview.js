// The widget view's pointer handling on the image (the draggable mask, hover read-out) and its preview panel.

import { clientToImage } from "./geometry.js";
import { READOUT_HINT, renderScores } from "./ui.js";
import { targetSummary } from "./methods.js";

/** @param {any} view */
export function bindPointerOf(view) {
  const stage = view.ui.stage;
  const toImage = (e) => clientToImage(stage.getBoundingClientRect(), view.shape[1], view.shape[0], e.clientX, e.clientY);
  let offset = { x: 0, y: 0 };
  stage.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    e.preventDefault();
    const p = toImage(e);
    // Grab the mask where it was clicked; a click elsewhere brings the mask there.
    offset = e.target === view.ui.mask || view.ui.mask.contains(/** @type {Node} */ (e.target)) ? { x: view.mask.x - p.x, y: view.mask.y - p.y } : { x: 0, y: 0 };
    view.dragging = true;
    stage.setPointerCapture?.(e.pointerId);
    view.moveTo(p.x + offset.x, p.y + offset.y);
    view.sendPreview(view.mask.x, view.mask.y);
    view.ui.root.classList.add("ow-dragging");
  });
  stage.addEventListener("pointermove", (e) => {
    const p = toImage(e);
    if (view.dragging) {
      view.moveTo(p.x + offset.x, p.y + offset.y);
      view.sendPreview(view.mask.x, view.mask.y);
    }
    view.readout(p.x, p.y);
  });
  const end = (e) => {
    if (!view.dragging) return;
    view.dragging = false;
    stage.releasePointerCapture?.(e.pointerId);
    view.sendPreview.flush();
    view.ui.root.classList.remove("ow-dragging");
  };
  stage.addEventListener("pointerup", end);
  stage.addEventListener("pointercancel", end);
  stage.addEventListener("pointerleave", () => {
    if (view.dragging) return;
    view.ui.readout.textContent = READOUT_HINT;
    delete view.ui.readout.dataset.value;
  });
}

/** @param {any} view */
export function drawPreviewImageOf(view) {
  const canvas = view.ui.previewCanvas;
  const ctx = canvas.getContext("2d");
  const p = view.shownPreview;
  if (!ctx || !view.image) return;
  ctx.drawImage(view.image, 0, 0, canvas.width, canvas.height);
  if (!p || !p.box) return;
  const [y0, x0, y1, x1] = p.box;
  if (view.fill) ctx.drawImage(view.fill, x0, y0, x1 - x0, y1 - y0, x0, y0, x1 - x0, y1 - y0);
  ctx.strokeStyle = "rgba(255, 255, 255, 0.9)";
  ctx.setLineDash([3, 2]);
  ctx.strokeRect(x0 + 0.5, y0 + 0.5, x1 - x0 - 1, y1 - y0 - 1);
  view.outputs.drawPreview(ctx, p); // a segmenter's or detector's answer to the occluded image
}

/** @param {any} view */
export function renderPreviewScoresOf(view) {
  const p = view.shownPreview;
  const ui = view.ui;
  if (!p) return;
  if (p.error) {
    ui.previewSummary.textContent = p.error;
    ui.previewSummary.classList.add("ow-preview-error");
    return;
  }
  ui.previewSummary.classList.remove("ow-preview-error");
  const current = (view.model.get("classes") || [])[view.selected];
  const id = current ? current.id : -1;
  renderScores(ui.previewBase, p.base, id, p.output);
  renderScores(ui.previewMasked, p.occluded, id, p.output);
  const target = (p.targets || []).find((t) => t.id === id);
  ui.previewSummary.textContent = targetSummary(target, current?.name ?? "", p.output);
  ui.previewSummary.dataset.seq = String(p.seq);
}
