// Colour scales: diverging ones centred on 0 (signed maps: occlusion) and sequential
// ones from 0 (non-negative maps: gradient methods; activations). Pure. The lookup
// tables come from the kernel (sampled from matplotlib, see occlusion_widget/_frontend.py).

/**
 * A lookup table: n RGB entries, flat.
 * @param {ArrayLike<number>} flat  [r0, g0, b0, r1, ...] in 0..255
 * @returns {Uint8Array}
 */
export function lookupTable(flat) {
  if (!flat || flat.length < 6 || flat.length % 3 !== 0) throw new RangeError("a colormap needs at least 2 RGB entries");
  return Uint8Array.from(flat);
}

/**
 * Position on the scale: -limit -> 0, 0 -> 0.5, +limit -> 1 (clamped).
 * @param {number} value
 * @param {number} limit  half-range, > 0
 */
export function unitPosition(value, limit) {
  const t = (value / limit + 1) / 2;
  return t < 0 ? 0 : t > 1 ? 1 : t;
}

/**
 * The colour of `value` on a scale from -limit to +limit.
 * @param {Uint8Array} lut
 * @param {number} value
 * @param {number} limit
 * @returns {[number, number, number]}
 */
export function colorFor(lut, value, limit) {
  const n = lut.length / 3;
  const i = Math.round(unitPosition(value, limit) * (n - 1)) * 3;
  return [lut[i], lut[i + 1], lut[i + 2]];
}

/**
 * The colour scale's upper limit for a map (its lower limit is -limit when signed, else 0): the largest
 * |value| (signed) or value (sequential), or that percentile of them so that a few extreme values do not
 * wash out the rest of the map. NaN and infinities are ignored; 1 when nothing positive is left. Mirrors
 * Python's `occlusion_widget.render.colour_limit` (numpy's default "linear" percentile).
 * @param {ArrayLike<number>} values
 * @param {boolean} signed
 * @param {number | null} [percentile]  in (0, 100]; null, undefined or 100: the maximum
 * @returns {number}
 */
export function colourLimit(values, signed, percentile = null) {
  if (percentile !== null && percentile !== undefined && !(percentile > 0 && percentile <= 100)) {
    throw new RangeError(`percentile=${percentile} is not allowed; use null (the full range) or a number in (0, 100]`);
  }
  const kept = new Float64Array(values.length);
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = signed ? Math.abs(values[i]) : values[i];
    if (Number.isFinite(v)) kept[n++] = v;
  }
  if (n === 0) return 1;
  const sorted = kept.subarray(0, n).sort();
  let limit;
  if (percentile === null || percentile === undefined || percentile === 100) limit = sorted[n - 1];
  else {
    // numpy: the value at fractional rank p/100 * (n - 1), linear between its two neighbours (interpolated
    // from the nearer one, as numpy's _lerp does, so that both give the same float).
    const rank = (percentile / 100) * (n - 1);
    const lo = Math.floor(rank);
    const hi = Math.min(lo + 1, n - 1);
    const t = rank - lo;
    const diff = sorted[hi] - sorted[lo];
    limit = t >= 0.5 ? sorted[hi] - diff * (1 - t) : sorted[lo] + diff * t;
  }
  return limit > 0 ? limit : 1;
}

/**
 * The finite [min, max] of some values ([0, 0] when none is finite).
 * @param {ArrayLike<number>} values
 * @returns {[number, number]}
 */
export function finiteRange(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < lo) lo = v; // NaN compares false
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : [0, 0];
}

/**
 * The lookup table `name` from the `colormaps` trait (or its first table, or a blue-white-red fallback).
 * @param {Record<string, number[]> | null | undefined} tables
 * @param {string} name
 * @returns {Uint8Array}
 */
export function tableFor(tables, name) {
  const flat = tables?.[name] ?? Object.values(tables ?? {})[0];
  return flat ? lookupTable(flat) : lookupTable([0, 0, 255, 255, 255, 255, 255, 0, 0]);
}

/**
 * Scale values to 0..1 by their own finite range (a constant map becomes 0); NaN stays NaN.
 * @param {ArrayLike<number>} values
 * @param {Float32Array} [out]  reused when its length fits
 * @returns {Float32Array}
 */
export function unitScale(values, out) {
  const scaled = out && out.length === values.length ? out : new Float32Array(values.length);
  const [lo, hi] = finiteRange(values);
  const span = hi > lo ? hi - lo : 1;
  for (let i = 0; i < values.length; i++) scaled[i] = (values[i] - lo) / span;
  return scaled;
}

/**
 * RGBA pixels of a map over the colour scale, alpha = opacity; NaN is transparent.
 * Signed: -limit..+limit over the table (0 in the middle); not signed: 0..limit
 * (values below 0 get the first colour).
 * @param {ArrayLike<number>} values
 * @param {number} limit
 * @param {Uint8Array} lut
 * @param {number} opacity  0..1
 * @param {Uint8ClampedArray<ArrayBuffer>} [out]  reused when its length fits
 * @param {boolean} [signed]
 * @returns {Uint8ClampedArray<ArrayBuffer>}
 */
export function paintRGBA(values, limit, lut, opacity, out, signed = true) {
  const rgba = out && out.length === values.length * 4 ? out : new Uint8ClampedArray(values.length * 4);
  const n = lut.length / 3;
  const alpha = Math.round(Math.max(0, Math.min(1, opacity)) * 255);
  const scale = signed ? (n - 1) / 2 / limit : (n - 1) / limit;
  const mid = signed ? (n - 1) / 2 : 0;
  for (let p = 0, o = 0; p < values.length; p++, o += 4) {
    const v = values[p];
    if (v !== v) {
      rgba[o + 3] = 0;
      continue;
    }
    let i = Math.round(mid + v * scale);
    i = (i < 0 ? 0 : i >= n ? n - 1 : i) * 3;
    rgba[o] = lut[i];
    rgba[o + 1] = lut[i + 1];
    rgba[o + 2] = lut[i + 2];
    rgba[o + 3] = alpha;
  }
  return rgba;
}

/**
 * A CSS gradient of the table, bottom (-limit) to top (+limit).
 * @param {Uint8Array} lut
 * @param {number} [stops]
 */
export function gradientCSS(lut, stops = 17) {
  const n = lut.length / 3;
  const parts = [];
  for (let s = 0; s < stops; s++) {
    const i = Math.round((s / (stops - 1)) * (n - 1)) * 3;
    parts.push(`rgb(${lut[i]}, ${lut[i + 1]}, ${lut[i + 2]}) ${((s / (stops - 1)) * 100).toFixed(1)}%`);
  }
  return `linear-gradient(to top, ${parts.join(", ")})`;
}

/**
 * Tick values of the colour bar, top to bottom: -limit..limit, or 0..limit when not signed.
 * @param {number} limit
 * @param {boolean} [signed]
 * @returns {number[]}
 */
export function colorbarTicks(limit, signed = true) {
  if (!signed) return [limit, (limit * 3) / 4, limit / 2, limit / 4, 0];
  return [limit, limit / 2, 0, -limit / 2, -limit];
}
