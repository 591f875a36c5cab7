// Decoding the kernel's binary payloads. Pure.

/**
 * @typedef {object} Maps
 * @property {Float32Array} data  (K, H, W) in C order; NaN = not computed yet
 * @property {number} k
 * @property {number} height
 * @property {number} width
 * @property {[number, number][]} ranges  finite [min, max] per class
 * @property {[number, number][]} worst   (y, x) mask centre that lowers each class most
 * @property {boolean} complete
 * @property {string} method  "occlusion", "grad_cam", "saliency" or "smoothgrad"
 * @property {boolean} signed  diverging scale around 0 (occlusion) or sequential from 0
 * @property {number} version
 */

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * A byte view of what the widget model holds for a `Bytes` trait: anywidget
 * hands a DataView; restored notebook state may give an ArrayBuffer or a typed array.
 * @param {DataView | ArrayBuffer | ArrayBufferView | null | undefined} value
 * @returns {Uint8Array}
 */
export function toBytes(value) {
  if (!value) return new Uint8Array(0);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError(`expected binary data, got ${Object.prototype.toString.call(value)}`);
}

/**
 * Little-endian float32 values from raw bytes (no copy when aligned).
 * @param {DataView | ArrayBuffer | ArrayBufferView} value
 * @param {number} [count] how many floats (default: all)
 * @returns {Float32Array}
 */
export function decodeFloat32(value, count) {
  const bytes = toBytes(value);
  const n = count ?? Math.floor(bytes.byteLength / 4);
  if (n * 4 > bytes.byteLength) throw new RangeError(`need ${n * 4} bytes for ${n} floats, got ${bytes.byteLength}`);
  if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, n);
  if (LITTLE_ENDIAN) return new Float32Array(bytes.slice(0, n * 4).buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, n * 4);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
  return out;
}

/**
 * The `map_data` trait decoded; null when there is nothing (yet) or it is inconsistent.
 * @param {any} payload
 * @returns {Maps | null}
 */
export function decodeMaps(payload) {
  if (!payload || !payload.data || !Array.isArray(payload.shape) || payload.shape.length !== 3) return null;
  const [k, height, width] = payload.shape;
  const n = k * height * width;
  if (!(n > 0) || toBytes(payload.data).byteLength < n * 4) return null;
  return {
    data: decodeFloat32(payload.data, n),
    k,
    height,
    width,
    ranges: payload.range ?? [],
    worst: payload.worst ?? [],
    complete: Boolean(payload.complete),
    method: payload.method ?? "occlusion",
    signed: payload.signed ?? true,
    version: payload.version ?? 0,
  };
}

/**
 * One compare-view panel's map, decoded; null while it has none.
 * @param {{data?: any, shape?: number[]}} panel
 * @returns {{values: Float32Array, height: number, width: number} | null}
 */
export function decodePanel(panel) {
  const [height, width] = panel?.shape ?? [0, 0];
  const n = height * width;
  if (!(n > 0) || !panel.data || toBytes(panel.data).byteLength < n * 4) return null;
  return { values: decodeFloat32(panel.data, n), height, width };
}

/**
 * @typedef {object} Activations
 * @property {string} layer
 * @property {Float32Array} data  (n, h, w): the strongest channels first
 * @property {number} n
 * @property {number} height
 * @property {number} width
 * @property {number[]} channels  each tile's channel index in the layer
 * @property {number[]} strength  each tile's strength (spatial mean or max)
 * @property {number} total  channels in the layer
 * @property {string} strengthBy  "mean" or "max"
 */

/**
 * The layer view's activations, decoded; null when there are none (yet).
 * @param {any} payload  the `layer_data` trait
 * @returns {Activations | null}
 */
export function decodeActivations(payload) {
  if (!payload || !payload.data || !Array.isArray(payload.shape) || payload.shape.length !== 3) return null;
  const [n, height, width] = payload.shape;
  const size = n * height * width;
  if (!(size > 0) || toBytes(payload.data).byteLength < size * 4) return null;
  return {
    layer: payload.layer,
    data: decodeFloat32(payload.data, size),
    n,
    height,
    width,
    channels: payload.channels ?? [],
    strength: payload.strength ?? [],
    total: payload.n_channels ?? n,
    strengthBy: payload.strength_by ?? "mean",
  };
}

/**
 * The values of class `index` (a view, not a copy).
 * @param {Maps} maps
 * @param {number} index
 * @returns {Float32Array}
 */
export function classValues(maps, index) {
  return plane(maps.data, maps.k, maps.height * maps.width, index);
}

/**
 * Plane `index` (clamped) of `count` planes of `size` values each (a view, not a copy).
 * @param {Float32Array} data
 * @param {number} count
 * @param {number} size
 * @param {number} index
 * @returns {Float32Array}
 */
export function plane(data, count, size, index) {
  const i = Math.max(0, Math.min(count - 1, index));
  return data.subarray(i * size, (i + 1) * size);
}
