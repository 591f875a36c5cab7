import { test } from "node:test";
import assert from "node:assert/strict";
import { toBytes, decodeFloat32, decodeMaps, classValues } from "../decode.js";

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
