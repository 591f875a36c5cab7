import { test } from "node:test";
import assert from "node:assert/strict";
import { visibleDetections, tabOf, addTarget, dragRegion, paintMask, detectionSpec } from "../targets.js";

const dets = [
  { box: [1, 2, 10, 12], label: 1, score: 0.9, name: "square 0.90" },
  { box: [20, 20, 30, 30], label: 2, score: 0.4, name: "disk 0.40" },
  { box: [5, 5, 8, 8], label: 2, score: 0.1, name: "disk 0.10" },
];

test("weak detections are not drawn, indices are kept", () => {
  assert.deepEqual(visibleDetections(dets, 0.5).map((d) => d.index), [0, 1]);
  assert.deepEqual(visibleDetections(dets, 0.05).map((d) => d.index), [0, 1, 2]);
});

test("a clicked box selects its tab or adds one", () => {
  const classes = [{ id: 0, name: "square 0.90", target: detectionSpec(dets[0]) }];
  assert.equal(tabOf(classes, dets[0]), 0);
  assert.equal(tabOf(classes, dets[1]), -1);
  assert.deepEqual(addTarget(classes, detectionSpec(dets[1])), { target_objects: [classes[0].target, detectionSpec(dets[1])], selected: 1 });
  assert.equal(addTarget([{ id: 3, name: "cat" }], detectionSpec(dets[1])), null, "a classifier's tabs carry no target");
});

test("a drag gives a clamped region, a click none", () => {
  assert.deepEqual(dragRegion({ x: 30.2, y: 5 }, { x: 10, y: 20.6 }, [64, 64]), [10, 5, 31, 22]);
  assert.deepEqual(dragRegion({ x: -5, y: -5 }, { x: 100, y: 3 }, [64, 64]), [0, 0, 64, 4]);
  assert.equal(dragRegion({ x: 3, y: 3 }, { x: 3.4, y: 3 }, [64, 64]), null);
});

test("the mask is painted in legend colours, background clear", () => {
  const out = paintMask(new Uint8Array([0, 1, 2]), [{ id: 1, color: [10, 20, 30] }, { id: 2, color: [1, 2, 3] }], 128, new Uint8ClampedArray(12));
  assert.deepEqual([...out], [0, 0, 0, 0, 10, 20, 30, 128, 1, 2, 3, 128]);
});
