import { test } from "node:test";
import assert from "node:assert/strict";
import { toBytes, decodeFloat32, decodeMaps, classValues, decodePanel, decodeActivations, plane } from "../decode.js";

const floatBytes = (values) => new Uint8Array(new Float32Array(values).buffer);

test("decodeFloat32 reads a DataView like the one anywidget hands over", () => {
  const bytes = floatBytes([1.5, -2, NaN]);
  const view = new DataView(bytes.buffer);
  const out = decodeFloat32(view);
  assert.equal(out.length, 3);
  assert.equal(out[0], 1.5);
  assert.equal(out[1], -2);
  assert.ok(Number.isNaN(out[2]));
});

test("decodeFloat32 honours a DataView's byteOffset, aligned or not", () => {
  for (const offset of [4, 3]) {
    const backing = new Uint8Array(offset + 8);
    backing.set(floatBytes([0.25, 7]), offset);
    const out = decodeFloat32(new DataView(backing.buffer, offset, 8));
    assert.deepEqual([...out], [0.25, 7], `offset ${offset}`);
  }
});

test("decodeFloat32 accepts ArrayBuffer and typed arrays, and checks the length", () => {
  assert.deepEqual([...decodeFloat32(floatBytes([3]).buffer)], [3]);
  assert.deepEqual([...decodeFloat32(floatBytes([3, 4]), 1)], [3]);
  assert.throws(() => decodeFloat32(floatBytes([3]), 2), RangeError);
  assert.equal(toBytes(null).length, 0);
  assert.throws(() => toBytes("abc"), TypeError);
});

test("decodeMaps reads shape, ranges, worst spots; classValues slices one class", () => {
  const data = floatBytes([1, 2, 3, 4, -1, -2, -3, -4]);
  const maps = decodeMaps({ data: new DataView(data.buffer), shape: [2, 2, 2], range: [[1, 4], [-4, -1]], worst: [[0, 1], [1, 0]], complete: true, version: 7 });
  assert.equal(maps.k, 2);
  assert.equal(maps.height, 2);
  assert.equal(maps.width, 2);
  assert.equal(maps.version, 7);
  assert.ok(maps.complete);
  assert.deepEqual([...classValues(maps, 1)], [-1, -2, -3, -4]);
  assert.deepEqual([...classValues(maps, 5)], [-1, -2, -3, -4], "index clamps to the last class");
  assert.deepEqual(maps.worst[0], [0, 1]);
});

test("decodeMaps returns null for empty or inconsistent payloads", () => {
  assert.equal(decodeMaps({}), null);
  assert.equal(decodeMaps(undefined), null);
  assert.equal(decodeMaps({ data: floatBytes([1]), shape: [1, 2, 2] }), null);
  assert.equal(decodeMaps({ data: floatBytes([1]), shape: [1, 1] }), null);
});

test("decodeMaps carries the method and whether the scale is signed (default: occlusion, signed)", () => {
  const data = floatBytes([1, 2, 3, 4]);
  assert.equal(decodeMaps({ data, shape: [1, 2, 2] }).method, "occlusion");
  assert.equal(decodeMaps({ data, shape: [1, 2, 2] }).signed, true);
  const grad = decodeMaps({ data, shape: [1, 2, 2], method: "grad_cam", signed: false });
  assert.equal(grad.method, "grad_cam");
  assert.equal(grad.signed, false);
});

test("decodePanel reads one compare panel's map, null while it has none", () => {
  const panel = decodePanel({ data: new DataView(floatBytes([1, 2, 3, 4, 5, 6]).buffer), shape: [2, 3] });
  assert.equal(panel.height, 2);
  assert.equal(panel.width, 3);
  assert.deepEqual([...panel.values], [1, 2, 3, 4, 5, 6]);
  assert.equal(decodePanel({ data: new Uint8Array(0), shape: [0, 0] }), null);
  assert.equal(decodePanel({ data: floatBytes([1]), shape: [2, 2] }), null);
  assert.equal(decodePanel(undefined), null);
});

test("decodeActivations reads the tiles with channel indices and strengths; plane slices one", () => {
  const acts = decodeActivations({
    data: floatBytes([1, 2, 3, 4, 5, 6, 7, 8]), shape: [2, 2, 2], layer: "conv", channels: [7, 3], strength: [6.5, 2.5],
    n_channels: 8, strength_by: "mean",
  });
  assert.equal(acts.n, 2);
  assert.equal(acts.total, 8);
  assert.deepEqual(acts.channels, [7, 3]);
  assert.deepEqual([...plane(acts.data, acts.n, 4, 1)], [5, 6, 7, 8]);
  assert.deepEqual([...plane(acts.data, acts.n, 4, 9)], [5, 6, 7, 8], "index clamps");
  assert.equal(decodeActivations({ status: "running", layers: [] }), null);
  assert.equal(decodeActivations({ data: floatBytes([1]), shape: [2, 2, 2] }), null);
});
