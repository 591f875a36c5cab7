// The standalone report's widget model: plays the kernel's part from saved state.
// occlusion_widget/report.py inlines this file in the page and calls boot(); no imports,
// no network. Encodings are described in report.py's docstring.

/** uint16 code of a NaN in quantised float payloads. */
const NAN_CODE = 65535;

/** @param {string} text base64 @returns {Uint8Array<ArrayBuffer>} */
function base64Bytes(text) {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/** zlib-wrapped deflate ("deflate" in the Compression Streams API). @param {Uint8Array<ArrayBuffer>} bytes */
async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * Saved state -> what anywidget would hand the view: binary payloads become DataViews
 * (quantised floats are expanded back to float32 little-endian).
 * @param {any} value
 * @returns {Promise<any>}
 */
export async function decodeValue(value) {
  if (Array.isArray(value)) return Promise.all(value.map(decodeValue));
  if (!value || typeof value !== "object") return value;
  if (typeof value.$bytes === "string") {
    const bytes = await inflate(base64Bytes(value.$bytes));
    return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  if (typeof value.$f32q === "string") {
    const codes = await inflate(base64Bytes(value.$f32q));
    if (codes.byteLength !== value.n * 2) throw new RangeError(`quantised payload: ${codes.byteLength} bytes for ${value.n} values`);
    const input = new DataView(codes.buffer, codes.byteOffset, codes.byteLength);
    const out = new DataView(new ArrayBuffer(value.n * 4));
    const scale = value.hi > value.lo ? (value.hi - value.lo) / (NAN_CODE - 1) : 1;
    for (let i = 0; i < value.n; i++) {
      const code = input.getUint16(i * 2, true);
      out.setFloat32(i * 4, code === NAN_CODE ? NaN : value.lo + code * scale, true);
    }
    return out;
  }
  const out = {};
  for (const [key, item] of Object.entries(value)) out[key] = await decodeValue(item);
  return out;
}

/**
 * The mask position whose box centre is nearest to (x, y), image pixels.
 * @param {{grid: number[], boxes: number[]}} table
 * @returns {{index: number, box: number[], x: number, y: number}}
 */
export function snapToMask(table, x, y) {
  const n = table.grid[0] * table.grid[1];
  let best = 0, bestDistance = Infinity;
  for (let i = 0; i < n; i++) {
    const [y0, x0, y1, x1] = table.boxes.slice(4 * i, 4 * i + 4);
    const d = ((y0 + y1 - 1) / 2 - y) ** 2 + ((x0 + x1 - 1) / 2 - x) ** 2;
    if (d < bestDistance) (best = i), (bestDistance = d);
  }
  const box = table.boxes.slice(4 * best, 4 * best + 4);
  return { index: best, box, x: (box[1] + box[3] - 1) / 2, y: (box[0] + box[2] - 1) / 2 };
}

/**
 * The `preview` answer to a `preview_request`, as the kernel sends it (widget.py
 * `_run_preview`), for the nearest mask position of the sweep.
 * @param {any} table report.py's preview_table
 * @param {{x: number, y: number, seq: number}} request
 */
export function previewAnswer(table, request) {
  if (!table) return { seq: request.seq, error: "The mask preview needs a kernel: this report holds no occlusion sweep." };
  const at = snapToMask(table, Number(request.x), Number(request.y));
  const name = (id) => table.names[String(id)] ?? `class ${id}`;
  const occluded = [];
  for (let j = 0; j < table.k; j++) {
    const id = table.top_ids[at.index * table.k + j];
    if (id >= 0) occluded.push({ id, name: name(id), score: table.top_scores[at.index * table.k + j] });
  }
  return {
    seq: request.seq, x: at.x, y: at.y, box: at.box, output: table.output, snapped: true, elapsed_ms: 0,
    base: table.base.map((b) => ({ id: b.id, name: name(b.id), score: b.score })),
    occluded,
    targets: table.targets.map((t) => ({ id: t.id, base: t.base, occluded: t.occluded[at.index] })),
  };
}

/** The subset of anywidget's model that the widget's render uses, over saved state. */
export class StandaloneModel {
  /**
   * @param {Record<string, any>} state decoded synced traits
   * @param {Record<string, Record<string, any>>} methods per computed method: map_data, classes, resolved_params
   * @param {any} table preview table (or null)
   */
  constructor(state, methods, table) {
    this.state = { ...state, ...(methods[state.method] ?? {}) }; // report.py stores each method's maps once
    this.methods = methods;
    this.table = table;
    /** @type {Map<string, Set<Function>>} */ this.listeners = new Map();
    this.kernelless = true; // widget.js: banner, parameter controls off
    this.availableMethods = Object.keys(methods); // widget.js: the method selector offers these
    this.widget_manager = { get_model: async () => { throw new Error("no kernel: the report holds one widget"); } };
  }

  get(name) {
    return this.state[name];
  }

  set(name, value) {
    if (name && typeof name === "object") {
      for (const [key, item] of Object.entries(name)) this.set(key, item);
      return;
    }
    if (this.state[name] === value) return;
    this.state[name] = value;
    this.emit(`change:${name}`, value);
    this.emit("change", value);
    this.react(name, value);
  }

  /** What the kernel would do when the view changes a trait. */
  react(name, value) {
    if (name === "method" && this.methods[value]) {
      for (const [key, item] of Object.entries(this.methods[value])) this.set(key, item);
      this.set("status", "done");
    } else if (name === "preview_request" && value && value.seq !== undefined) {
      queueMicrotask(() => this.set("preview", previewAnswer(this.table, value)));
    }
  }

  on(events, fn) {
    for (const event of String(events).split(/\s+/).filter(Boolean)) {
      const set = this.listeners.get(event) ?? new Set();
      set.add(fn);
      this.listeners.set(event, set);
    }
  }

  off(events, fn) {
    if (!events) return this.listeners.clear();
    for (const event of String(events).split(/\s+/).filter(Boolean)) {
      if (fn) this.listeners.get(event)?.delete(fn);
      else this.listeners.delete(event);
    }
  }

  emit(event, value) {
    for (const fn of [...(this.listeners.get(event) ?? [])]) fn(this, value);
  }

  save_changes() {} // nothing to sync: set() already answered
  send() {} // no kernel: a ping gets no pong, a cancel has nothing to stop
}

/**
 * Decode the page's data, import the widget's module (a blob URL, as anywidget does) and render it.
 * @param {HTMLElement} dataElement the JSON script element written by report.py
 * @param {HTMLElement & {owModel?: StandaloneModel}} el where the widget goes
 */
export async function boot(dataElement, el) {
  try {
    const data = JSON.parse(dataElement.textContent);
    /** @type {Record<string, Record<string, any>>} */
    const methods = {};
    for (const [method, state] of Object.entries(data.methods)) methods[method] = await decodeValue(state);
    const model = new StandaloneModel(await decodeValue(data.state), methods, data.preview);
    const url = URL.createObjectURL(new Blob([data.esm], { type: "text/javascript" }));
    const widget = (await import(url)).default;
    URL.revokeObjectURL(url);
    if (typeof widget.initialize === "function") await widget.initialize({ model });
    await widget.render({ model, el });
    el.dataset.ready = "true";
    el.owModel = model; // for tests and tools: the state the page shows
    return model;
  } catch (error) {
    el.textContent = `The report could not be shown: ${error}`;
    el.dataset.ready = "error";
    throw error;
  }
}
