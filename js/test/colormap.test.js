import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { lookupTable, unitPosition, colorFor, colourLimit, paintRGBA, gradientCSS, colorbarTicks, finiteRange, unitScale, tableFor } from "../colormap.js";

// The real tables (sampled from matplotlib by occlusion_widget._frontend.colormap_tables)
// when tests/test_js.py passes them in OW_COLORMAPS; RdBu_r's two ends and centre otherwise.
const tables = process.env.OW_COLORMAPS
  ? JSON.parse(readFileSync(process.env.OW_COLORMAPS, "utf8"))
  : { RdBu_r: [5, 48, 97, 247, 247, 247, 103, 0, 31] };
const rdbu = lookupTable(tables.RdBu_r);
// The sequential tables (OW_SEQUENTIAL, from the same function) for non-negative maps.
const sequential = process.env.OW_SEQUENTIAL ? JSON.parse(readFileSync(process.env.OW_SEQUENTIAL, "utf8")) : null;

test("every table is 256 RGB entries in 0..255", { skip: !process.env.OW_COLORMAPS && "no OW_COLORMAPS" }, () => {
  for (const [name, flat] of Object.entries(tables)) {
    assert.equal(flat.length, 256 * 3, name);
    assert.ok(flat.every((v) => Number.isInteger(v) && v >= 0 && v <= 255), name);
  }
});

test("every diverging table runs from cool/blue-ish to warm/red-ish through a light centre", { skip: !process.env.OW_COLORMAPS && "no OW_COLORMAPS" }, () => {
  for (const [name, flat] of Object.entries(tables)) {
    const lut = lookupTable(flat);
    const mid = colorFor(lut, 0, 1);
    const lo = colorFor(lut, -1, 1);
    const hi = colorFor(lut, 1, 1);
    const light = (c) => c[0] + c[1] + c[2];
    assert.ok(light(mid) > light(lo) && light(mid) > light(hi), `${name}: the centre is the lightest`);
    assert.notDeepEqual(lo, hi, name);
  }
});

test("lookupTable rejects tables that are not RGB triples", () => {
  assert.throws(() => lookupTable([1, 2, 3, 4]), RangeError);
  assert.equal(lookupTable([0, 0, 0, 255, 255, 255]).length, 6);
});

test("unitPosition centres 0 and clamps outside the limit", () => {
  assert.equal(unitPosition(0, 2), 0.5);
  assert.equal(unitPosition(-2, 2), 0);
  assert.equal(unitPosition(2, 2), 1);
  assert.equal(unitPosition(10, 2), 1);
  assert.equal(unitPosition(-10, 2), 0);
});

test("RdBu_r maps -1 to blue, 0 to white, +1 to red", () => {
  const [r0, g0, b0] = colorFor(rdbu, -1, 1);
  const [r1, g1, b1] = colorFor(rdbu, 0, 1);
  const [r2, g2, b2] = colorFor(rdbu, 1, 1);
  assert.ok(b0 > r0 + 50, `negative end should be blue, got ${[r0, g0, b0]}`);
  assert.ok(r1 > 230 && g1 > 230 && b1 > 230, `centre should be near white, got ${[r1, g1, b1]}`);
  assert.ok(r2 > b2 + 50, `positive end should be red, got ${[r2, g2, b2]}`);
});

test("colourLimit: the largest |value| (signed) or value (sequential), NaN and infinities ignored, 1 when nothing is positive", () => {
  assert.equal(colourLimit(new Float32Array([0.1, -0.5, NaN, 0.3]), true), Math.fround(0.5));
  assert.equal(colourLimit(new Float32Array([0.1, -0.5, NaN, 0.3]), false), Math.fround(0.3));
  assert.equal(colourLimit([1, Infinity, -Infinity, 2], true), 2);
  assert.equal(colourLimit(new Float32Array([0, 0]), true), 1);
  assert.equal(colourLimit(new Float32Array([NaN]), true), 1);
  assert.equal(colourLimit([], false), 1);
  assert.equal(colourLimit([-3, -1], false), 1, "a sequential scale of non-positive values");
});

test("colourLimit at a percentile: numpy's linear interpolation between the two nearest ranks", () => {
  // |values| sorted: 0, 1, ..., 100 (101 values): the p-th percentile is p.
  const values = Array.from({ length: 101 }, (_, i) => (i % 2 ? -i : i));
  assert.equal(colourLimit(values, true, 50), 50);
  assert.equal(colourLimit(values, true, 99), 99);
  assert.ok(Math.abs(colourLimit(values, true, 99.9) - 99.9) < 1e-12 * 100);
  assert.equal(colourLimit(values, true, 100), 100);
  assert.equal(colourLimit(values, true, null), 100);
  // Between ranks: 4 values 0, 10, 20, 1000 -> rank 0.95 * 3 = 2.85 -> 20 + 0.85 * 980.
  assert.ok(Math.abs(colourLimit([0, 10, 20, 1000], false, 95) - (20 + 0.85 * 980)) < 1e-12 * 1000);
  // One extreme value no longer washes out the rest.
  const spiky = [...Array(999).fill(1), 1000];
  assert.equal(colourLimit(spiky, true), 1000);
  assert.equal(colourLimit(spiky, true, 99), 1);
  for (const bad of [0, -1, 101, NaN]) assert.throws(() => colourLimit([1], true, bad), /percentile=/);
});

test("colourLimit equals Python's render.colour_limit on the same maps", { skip: !process.env.OW_LIMIT_CASES && "OW_LIMIT_CASES is not set (tests/test_js.py sets it)" }, () => {
  const cases = JSON.parse(readFileSync(/** @type {string} */ (process.env.OW_LIMIT_CASES), "utf8"));
  assert.ok(cases.length >= 20);
  for (const { values, signed, percentile, expected } of cases) {
    const got = colourLimit(values.map((v) => (v === null ? NaN : v === "inf" ? Infinity : v === "-inf" ? -Infinity : v)), signed, percentile);
    assert.ok(Math.abs(got - expected) <= 1e-12 * Math.abs(expected), `${signed} ${percentile}: ${got} vs numpy ${expected}`);
  }
});

test("paintRGBA colours values, bakes opacity into alpha, and leaves NaN transparent", () => {
  const lut = lookupTable([0, 0, 255, 255, 255, 255, 255, 0, 0]);
  const px = paintRGBA(new Float32Array([-1, 0, 1, NaN, 5]), 1, lut, 0.5);
  assert.deepEqual([...px.slice(0, 4)], [0, 0, 255, 128]);
  assert.deepEqual([...px.slice(4, 8)], [255, 255, 255, 128]);
  assert.deepEqual([...px.slice(8, 12)], [255, 0, 0, 128]);
  assert.equal(px[15], 0, "NaN is transparent");
  assert.deepEqual([...px.slice(16, 20)], [255, 0, 0, 128], "values beyond the limit clamp to the end colour");
});

test("paintRGBA reuses an output buffer of the right size", () => {
  const lut = lookupTable([0, 0, 255, 255, 0, 0]);
  const out = new Uint8ClampedArray(8);
  assert.equal(paintRGBA([1, -1], 1, lut, 1, out), out);
  assert.notEqual(paintRGBA([1, -1, 0], 1, lut, 1, out), out);
});

test("gradientCSS runs bottom to top from the negative end", () => {
  const css = gradientCSS(lookupTable([0, 0, 255, 255, 0, 0]), 2);
  assert.equal(css, "linear-gradient(to top, rgb(0, 0, 255) 0.0%, rgb(255, 0, 0) 100.0%)");
});

test("colour bar ticks of a signed scale run from +limit down to -limit", () => {
  assert.deepEqual(colorbarTicks(0.4), [0.4, 0.2, 0, -0.2, -0.4]);
});

test("every sequential table gets lighter from 0 to the top", { skip: !sequential && "no OW_SEQUENTIAL" }, () => {
  const light = (c) => 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
  for (const [name, flat] of Object.entries(sequential)) {
    const lut = lookupTable(flat);
    assert.equal(flat.length, 256 * 3, name);
    const steps = [0, 0.25, 0.5, 0.75, 1].map((t) => light(colorFor(lut, 2 * t - 1, 1)));
    for (let i = 1; i < steps.length; i++) assert.ok(steps[i] > steps[i - 1], `${name}: lighter at step ${i}`);
  }
});

test("paintRGBA without sign maps 0..limit over the whole table and clamps below 0", () => {
  const lut = lookupTable([0, 0, 0, 128, 128, 128, 255, 255, 255]);
  const px = paintRGBA(new Float32Array([0, 1, 2, -1, NaN]), 2, lut, 1, undefined, false);
  assert.deepEqual([...px.slice(0, 4)], [0, 0, 0, 255]);
  assert.deepEqual([...px.slice(4, 8)], [128, 128, 128, 255]);
  assert.deepEqual([...px.slice(8, 12)], [255, 255, 255, 255]);
  assert.deepEqual([...px.slice(12, 16)], [0, 0, 0, 255], "below 0: the first colour");
  assert.equal(px[19], 0, "NaN is transparent");
});

test("colour bar ticks of a sequential scale run from the limit down to 0", () => {
  assert.deepEqual(colorbarTicks(2, false), [2, 1.5, 1, 0.5, 0]);
});

test("finiteRange and unitScale ignore NaN; a constant map scales to 0", () => {
  assert.deepEqual(finiteRange([3, NaN, -1, 2]), [-1, 3]);
  assert.deepEqual(finiteRange([NaN]), [0, 0]);
  assert.deepEqual([...unitScale([2, 4, 3])], [0, 1, 0.5]);
  assert.deepEqual([...unitScale([5, 5])], [0, 0]);
  const out = new Float32Array(2);
  assert.equal(unitScale([1, 2], out), out, "reuses a buffer of the right size");
});

test("tableFor picks a table by name, else the first, else a fallback", () => {
  assert.deepEqual([...tableFor({ a: [1, 2, 3, 4, 5, 6], b: [6, 5, 4, 3, 2, 1] }, "b")], [6, 5, 4, 3, 2, 1]);
  assert.deepEqual([...tableFor({ a: [1, 2, 3, 4, 5, 6] }, "zzz")], [1, 2, 3, 4, 5, 6]);
  assert.equal(tableFor(undefined, "x").length, 9);
});

test("a full 256-entry signed scale reaches its ends at ±limit, not at half of it", () => {
  // Entry i is (i, 0, 255 - i): the red channel of a painted pixel is the table index it used.
  const flat = [];
  for (let i = 0; i < 256; i++) flat.push(i, 0, 255 - i);
  const lut = lookupTable(flat);
  const limit = 0.37;
  const values = [];
  for (let s = -20; s <= 20; s++) values.push((s / 20) * limit);
  const px = paintRGBA(new Float32Array(values), limit, lut, 1);
  values.forEach((v, j) => {
    const expected = 127.5 + (v / limit) * 127.5; // linear from index 0 at -limit to 255 at +limit
    assert.ok(Math.abs(px[4 * j] - expected) <= 1, `value ${v.toFixed(4)}: index ${px[4 * j]}, expected ${expected.toFixed(1)}`);
    assert.ok(Math.abs(colorFor(lut, v, limit)[0] - expected) <= 1, `colorFor at ${v.toFixed(4)}`);
  });
  const half = paintRGBA(new Float32Array([limit / 2, -limit / 2]), limit, lut, 1);
  assert.ok(half[0] < 200 && half[4] > 55, `half the limit is three quarters up the scale, not its end: ${half[0]}, ${half[4]}`);
  if (process.env.OW_COLORMAPS) {
    // The real table too: +limit/2 is entry round(127.5 + 63.75) = 191 of RdBu_r, not its red end.
    const mid = [...paintRGBA(new Float32Array([limit / 2]), limit, rdbu, 1).slice(0, 3)];
    assert.deepEqual(mid, [...rdbu.slice(191 * 3, 191 * 3 + 3)]);
    assert.notDeepEqual(mid, [...rdbu.slice(255 * 3)], "RdBu_r saturates at half the limit");
  }
});
