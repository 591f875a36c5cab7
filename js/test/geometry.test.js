import { test } from "node:test";
import assert from "node:assert/strict";
import { clientToImage, imageToClient, clamp, maskBox, boxToPercent, mapIndex, resolvePair } from "../geometry.js";

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

test("resolvePair: auto is a fraction of each axis, ints and pairs pass through", () => {
  assert.deepEqual(resolvePair("auto", [224, 224], 0.2), [45, 45]);
  assert.deepEqual(resolvePair("auto", [3, 3], 0.1), [1, 1]);
  assert.deepEqual(resolvePair(30, [224, 224], 0.2), [30, 30]);
  assert.deepEqual(resolvePair([10, 20], [224, 224], 0.2), [10, 20]);
  assert.equal(clamp(5, 0, 3), 3);
  assert.equal(clamp(-1, 0, 3), 0);
});
