import { test } from "node:test";
import assert from "node:assert/strict";
import * as geometry from "../geometry.js";

const { clientToImage, imageToClient, clamp, maskBox, boxToPercent, mapIndex, validMaskSize, shownMaskSize, figureLayout, FIGURE } = geometry;

const rect = { left: 100, top: 50, width: 448, height: 448 };

test("clientToImage maps the element's corners and centre to image pixels", () => {
  assert.deepEqual(clientToImage(rect, 224, 224, 100, 50), { x: -0.5, y: -0.5 });
  assert.deepEqual(clientToImage(rect, 224, 224, 548, 498), { x: 223.5, y: 223.5 });
  assert.deepEqual(clientToImage(rect, 224, 224, 324, 274), { x: 111.5, y: 111.5 });
});

test("imageToClient inverts clientToImage, also for non-square images", () => {
  const r = { left: 10, top: 20, width: 300, height: 150 };
  for (const [x, y] of [[0, 0], [199.5, 99], [37, 12]]) {
    const c = imageToClient(r, 200, 100, x, y);
    const back = clientToImage(r, 200, 100, c.x, c.y);
    assert.ok(Math.abs(back.x - x) < 1e-9 && Math.abs(back.y - y) < 1e-9);
  }
});

test("maskBox follows the sweep's rule (same cases as tests/test_widget.py)", () => {
  assert.deepEqual(maskBox(111.5, 111.5, [45, 45], [224, 224], true), [90, 90, 135, 135]);
  assert.deepEqual(maskBox(0, 0, [45, 45], [224, 224], true), [0, 0, 23, 23]);
  assert.deepEqual(maskBox(223, 223, [45, 45], [224, 224], true), [201, 201, 224, 224]);
  assert.deepEqual(maskBox(0, 0, [45, 45], [224, 224], false), [0, 0, 45, 45]);
  assert.deepEqual(maskBox(223, 10, [45, 20], [224, 224], false), [179, 0, 224, 20]);
  assert.deepEqual(maskBox(50, 60, [300, 10], [224, 224], true), [0, 55, 162, 65]);
});

test("maskBox first moves a centre outside the image onto its nearest pixel, as preview.mask_box does", () => {
  // Never an empty or inverted box, whatever the pointer did.
  assert.deepEqual(maskBox(-50, 300, [45, 45], [224, 224], true), [0, 201, 23, 224]);
  assert.deepEqual(maskBox(-50, 300, [45, 45], [224, 224], false), [0, 179, 45, 224]);
  assert.deepEqual(maskBox(1e9, -1e9, [10, 10], [224, 224], true), maskBox(223, 0, [10, 10], [224, 224], true));
});

test("boxToPercent places a box as CSS percentages", () => {
  assert.deepEqual(boxToPercent([0, 56, 112, 224], [224, 224]), { left: 25, top: 0, width: 75, height: 50 });
});

test("mapIndex finds the map cell under an image pixel, for full-size and grid-size maps", () => {
  assert.equal(mapIndex(0, 0, [224, 224], [224, 224]), 0);
  assert.equal(mapIndex(223, 1, [224, 224], [224, 224]), 224 + 223);
  assert.equal(mapIndex(223, 223, [224, 224], [11, 11]), 120);
  assert.equal(mapIndex(-5, 0, [224, 224], [11, 11]), -1);
  assert.equal(mapIndex(10, 300, [224, 224], [11, 11]), -1);
});

test("no engine arithmetic here: the 'auto' sizes come resolved from the kernel", () => {
  assert.equal(geometry.resolvePair, undefined, "the JS copy of the 20%/10% rule is gone");
  assert.equal(clamp(5, 0, 3), 3);
  assert.equal(clamp(-1, 0, 3), 0);
});

test("shownMaskSize: the slider while it moves, else the trait, else the kernel's resolved size for auto", () => {
  const shape = [224, 224];
  assert.deepEqual(shownMaskSize(null, "auto", [45, 45], shape), [45, 45]);
  assert.deepEqual(shownMaskSize(null, "auto", [33, 17], shape), [33, 17], "whatever the kernel resolved, not a rule of thumb");
  assert.equal(shownMaskSize(null, "auto", undefined, shape), null, "nothing is drawn before the kernel has answered");
  assert.deepEqual(shownMaskSize(null, 30, [45, 45], shape), [30, 30]);
  assert.deepEqual(shownMaskSize(60, 30, [45, 45], shape), [60, 60]);
  assert.equal(shownMaskSize(null, 300, [45, 45], shape), null);
});

test("validMaskSize: only sizes the engine accepts, else null (nothing is drawn)", () => {
  const shape = [224, 224];
  assert.equal(validMaskSize("auto", shape), null, "only the kernel resolves auto");
  assert.deepEqual(validMaskSize(30, shape), [30, 30]);
  assert.deepEqual(validMaskSize([10, 224], shape), [10, 224]);
  for (const bad of [0, -5, 225, 1000, 2.5, NaN, "x", "", null, undefined, [10], [10, 300], [0, 5], ["a", 3]]) {
    assert.equal(validMaskSize(bad, shape), null, JSON.stringify(bad));
  }
  assert.deepEqual(validMaskSize(5, [1, 100]), [1, 5], "a 1-D signal's height is always 1");
  // What the old code drew for 1000: a box covering the whole image, not the mask the user asked for.
  assert.deepEqual(maskBox(111.5, 111.5, [1000, 1000], shape, true), [0, 0, 224, 224]);
});

test("figureLayout: a title band on top, then panels with their colour bars, all inside and apart", () => {
  const inside = (r, w, h) => r.left >= 0 && r.top >= 0 && r.left + r.width <= w && r.top + r.height <= h;
  const apart = (a, b) => a.left + a.width <= b.left || b.left + b.width <= a.left || a.top + a.height <= b.top || b.top + b.height <= a.top;
  const one = figureLayout({ count: 1, imageW: 416, imageH: 416 });
  assert.ok(one.width > 416 && one.height > 416 + FIGURE.title, "larger than the picture alone");
  assert.equal(one.title.top, FIGURE.pad);
  assert.ok(one.panels[0].image.top >= one.title.top + one.title.height, "the title band is above the image");
  assert.deepEqual([one.panels[0].image.width, one.panels[0].image.height], [416, 416]);
  assert.ok(apart(one.panels[0].image, one.panels[0].bar) && one.panels[0].ticksX >= one.panels[0].bar.left + one.panels[0].bar.width);
  assert.ok(one.panels[0].ticksX + FIGURE.ticks <= one.width - FIGURE.pad + 1e-9, "tick labels fit");
  const four = figureLayout({ count: 4, columns: 4, imageW: 224, imageH: 168, heads: true, feet: true });
  const rects = four.panels.flatMap((p) => [p.head, p.image, p.bar, p.foot]);
  for (const r of rects) assert.ok(inside(r, four.width, four.height), JSON.stringify(r));
  for (let i = 0; i < rects.length; i++) for (let j = i + 1; j < rects.length; j++) assert.ok(apart(rects[i], rects[j]), `${i} overlaps ${j}`);
  const grid = figureLayout({ count: 4, columns: 2, imageW: 100, imageH: 100 });
  assert.equal(grid.panels[2].image.left, grid.panels[0].image.left, "the third panel starts the second row");
  assert.ok(grid.panels[2].image.top > grid.panels[0].image.top + 100);
  assert.throws(() => figureLayout({ count: 0, imageW: 10, imageH: 10 }), RangeError);
});
