// The audit gallery (occlusion_widget/audit/gallery.py): thumbnails with their overlays, sorted and
// filtered here in the browser; a click sets `opened` and the kernel opens that row in an
// OcclusionWidget. A second tab shows the per-class mean maps and the summary table.
// Self-contained: no imports, so the file is served as it is (or bundled later).

const CORRECT = ["all", "correct", "incorrect"];

/** @param {unknown} v @returns {boolean} a finite number */
function isNumber(v) {
  return typeof v === "number" && Number.isFinite(v);
}

/** A cell as a number for sorting and ranges: booleans are 0/1, anything else not finite is NaN. */
function toNumber(v) {
  if (typeof v === "boolean") return v ? 1 : 0;
  return isNumber(v) ? v : NaN;
}

/**
 * The rows to show, in order: the same rules as AuditGallery.visible_rows() in Python.
 * Missing values (null, NaN) sort last in either direction; ties keep the audit's row order.
 * @param {Array<Record<string, any>>} rows
 * @param {{sort_by?: string, descending?: boolean, filter_class?: string, class_field?: string,
 *   filter_correct?: string, filter_metric?: string, filter_min?: number|null, filter_max?: number|null}} s
 * @returns {number[]} the `row` values to show
 */
export function visibleRows(rows, s) {
  const field = s.class_field || "true_name";
  const keep = rows.filter((r) => {
    if (s.filter_class && r[field] !== s.filter_class) return false;
    if (s.filter_correct === "correct" && r.correct !== true) return false;
    if (s.filter_correct === "incorrect" && r.correct !== false) return false;
    if (s.filter_metric) {
      const v = toNumber(r[s.filter_metric]);
      const bounded = isNumber(s.filter_min) || isNumber(s.filter_max);
      if (bounded && !isNumber(v)) return false;
      if (isNumber(s.filter_min) && v < s.filter_min) return false;
      if (isNumber(s.filter_max) && v > s.filter_max) return false;
    }
    return true;
  });
  if (s.sort_by) {
    const key = s.sort_by, sign = s.descending ? -1 : 1;
    keep.sort((a, b) => {
      const va = toNumber(a[key]), vb = toNumber(b[key]);
      const na = !isNumber(va), nb = !isNumber(vb);
      if (na || nb) return na === nb ? a.row - b.row : na ? 1 : -1;
      return va === vb ? a.row - b.row : sign * (va < vb ? -1 : 1);
    });
  }
  return keep.map((r) => r.row);
}

/** A number for a caption or a table cell. */
function fmt(v) {
  if (v === null || v === undefined || (typeof v === "number" && Number.isNaN(v))) return "–";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(3);
}

/** A binary trait (DataView, ArrayBuffer or typed array) -> an object URL of that image. */
function imageUrl(value, mime, urls) {
  if (!value) return "";
  const bytes = value instanceof ArrayBuffer ? new Uint8Array(value)
    : new Uint8Array(value.buffer, value.byteOffset ?? 0, value.byteLength);
  const url = URL.createObjectURL(new Blob([bytes], { type: mime }));
  urls.push(url);
  return url;
}

function element(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function option(select, value, text) {
  const o = element("option", "", text);
  o.value = value;
  select.appendChild(o);
}

function render({ model, el }) {
  /** @type {string[]} */ let urls = []; // the thumbnails' object URLs
  /** @type {string[]} */ let meanUrls = []; // the class means' ones
  const root = element("div", "owa-root");
  const tabs = element("div", "owa-tabs");
  const tabButtons = {};
  for (const [tab, text] of [["gallery", "Gallery"], ["summary", "Classes and summary"]]) {
    const b = element("button", "owa-tab", text);
    b.type = "button";
    b.dataset.tab = tab;
    b.addEventListener("click", () => { model.set("tab", tab); model.save_changes(); });
    tabButtons[tab] = b;
    tabs.appendChild(b);
  }
  const title = element("span", "owa-title");
  tabs.appendChild(title);

  // --- gallery pane: controls, grid, status --------------------------------------------------
  const gallery = element("div", "owa-pane owa-gallery");
  const controls = element("div", "owa-controls");
  const label = (text, input) => { const l = element("label", "owa-control", text); l.appendChild(input); return l; };
  const sortBy = element("select");
  sortBy.dataset.control = "sort_by";
  const descending = element("button", "owa-button");
  descending.type = "button";
  descending.dataset.control = "descending";
  const classSel = element("select");
  classSel.dataset.control = "filter_class";
  const correctSel = element("select");
  correctSel.dataset.control = "filter_correct";
  for (const c of CORRECT) option(correctSel, c, c === "all" ? "correct and incorrect" : c);
  const metricSel = element("select");
  metricSel.dataset.control = "filter_metric";
  const minIn = element("input");
  const maxIn = element("input");
  for (const [input, name] of [[minIn, "filter_min"], [maxIn, "filter_max"]]) {
    input.type = "number";
    input.step = "any";
    input.dataset.control = name;
    input.placeholder = name === "filter_min" ? "min" : "max";
  }
  const count = element("span", "owa-count");
  const classLabel = label("class ", classSel);
  controls.append(label("sort ", sortBy), descending, classLabel, correctSel, label("where ", metricSel), minIn, maxIn, count);
  const grid = element("div", "owa-grid");
  const status = element("div", "owa-status");
  gallery.append(controls, grid, status);

  // --- summary pane: class means and the table ---------------------------------------------------
  const summary = element("div", "owa-pane owa-summary-pane");
  const means = element("div", "owa-means");
  const table = element("table", "owa-summary");
  summary.append(element("h4", "owa-heading", "Mean map per class"), means,
    element("h4", "owa-heading", "Summary"), table);
  root.append(tabs, gallery, summary);
  el.appendChild(root);

  /** @type {Map<number, HTMLElement>} */ let cards = new Map();

  const setTrait = (name, value) => { model.set(name, value); model.save_changes(); };
  sortBy.addEventListener("change", () => setTrait("sort_by", sortBy.value));
  descending.addEventListener("click", () => setTrait("descending", !model.get("descending")));
  classSel.addEventListener("change", () => setTrait("filter_class", classSel.value));
  correctSel.addEventListener("change", () => setTrait("filter_correct", correctSel.value));
  metricSel.addEventListener("change", () => setTrait("filter_metric", metricSel.value));
  for (const [input, name] of [[minIn, "filter_min"], [maxIn, "filter_max"]]) {
    input.addEventListener("change", () => {
      const v = input.value.trim() === "" ? null : Number(input.value);
      setTrait(name, isNumber(v) ? v : null);
    });
  }

  function rebuildOptions() {
    const numeric = model.get("numeric_columns") || [];
    sortBy.replaceChildren();
    option(sortBy, "", "audit order");
    for (const c of numeric) option(sortBy, c, c.replaceAll("_", " "));
    metricSel.replaceChildren();
    option(metricSel, "", "(no range)");
    for (const c of numeric) option(metricSel, c, c.replaceAll("_", " "));
    classSel.replaceChildren();
    option(classSel, "", "all classes");
    for (const c of model.get("classes") || []) option(classSel, c, c);
    classLabel.firstChild.textContent = model.get("class_field") === "pred_name" ? "predicted " : "true class ";
    correctSel.disabled = !model.get("has_labels");
  }

  function rebuildCards() {
    for (const u of urls) URL.revokeObjectURL(u);
    urls = [];
    const rows = model.get("rows") || [];
    const thumbs = model.get("thumbs") || [];
    const mime = model.get("thumb_mime") || "image/png";
    cards = new Map();
    grid.replaceChildren();
    rows.forEach((r, i) => {
      const card = element("button", "owa-thumb");
      card.type = "button";
      card.dataset.row = String(r.row);
      if (r.correct !== null && r.correct !== undefined) card.dataset.correct = String(r.correct);
      const img = element("img");
      img.alt = `${r.image_id}: ${r.target_name}`;
      img.src = imageUrl(thumbs[i], mime, urls);
      const cap = element("span", "owa-caption");
      const pred = element("span", "owa-pred", r.pred_name ?? "");
      cap.appendChild(pred);
      if (r.true_name !== null && r.true_name !== undefined && r.correct === false) {
        cap.appendChild(element("span", "owa-true", `true: ${r.true_name}`));
      }
      cap.appendChild(element("span", "owa-conf", `${fmt(r.confidence)}`));
      cap.appendChild(element("span", "owa-metric")); // the sorted-by metric, when it is not confidence
      card.title = `${r.image_id}\nexplains: ${r.target_name}` +
        (r.true_name ? `\ntrue: ${r.true_name}` : "") + `\npredicted: ${r.pred_name} (${fmt(r.confidence)})`;
      card.append(img, cap);
      card.addEventListener("click", () => setTrait("opened", r.row));
      cards.set(r.row, card);
      grid.appendChild(card);
    });
  }

  function applyView() {
    const rows = model.get("rows") || [];
    const state = {};
    for (const k of ["sort_by", "descending", "filter_class", "class_field", "filter_correct", "filter_metric", "filter_min", "filter_max"]) {
      state[k] = model.get(k);
    }
    const order = visibleRows(rows, state);
    const shown = new Set(order);
    for (const row of order) grid.appendChild(cards.get(row)); // moves the card: the DOM order is the view's
    const shownMetric = state.sort_by && state.sort_by !== "confidence" ? state.sort_by : "";
    rows.forEach((r) => {
      const span = cards.get(r.row)?.querySelector(".owa-metric");
      if (span) span.textContent = shownMetric ? `${shownMetric.replaceAll("_", " ")} ${fmt(r[shownMetric])}` : "";
    });
    for (const [row, card] of cards) {
      card.hidden = !shown.has(row);
      card.classList.toggle("owa-opened", row === model.get("opened"));
    }
    count.textContent = `${order.length} of ${rows.length}`;
    grid.dataset.order = order.join(",");
    sortBy.value = state.sort_by || "";
    descending.textContent = state.descending ? "↓ high first" : "↑ low first";
    descending.setAttribute("aria-pressed", String(!!state.descending));
    classSel.value = state.filter_class || "";
    correctSel.value = state.filter_correct || "all";
    metricSel.value = state.filter_metric || "";
    minIn.value = isNumber(state.filter_min) ? String(state.filter_min) : "";
    maxIn.value = isNumber(state.filter_max) ? String(state.filter_max) : "";
    minIn.disabled = maxIn.disabled = !state.filter_metric;
  }

  function applyStatus() {
    const error = model.get("error") || "";
    const message = model.get("message") || "";
    status.textContent = error || message;
    status.classList.toggle("owa-error", !!error);
    title.textContent = model.get("title") || "";
  }

  function rebuildSummary() {
    means.replaceChildren();
    for (const u of meanUrls) URL.revokeObjectURL(u);
    meanUrls = [];
    const mime = model.get("thumb_mime") || "image/png";
    for (const m of model.get("class_means") || []) {
      const fig = element("figure", "owa-mean");
      const img = element("img");
      img.alt = `mean map: ${m.name}`;
      img.src = imageUrl(m.thumb, mime, meanUrls);
      fig.append(img, element("figcaption", "", `${m.name} (${m.count})`));
      means.appendChild(fig);
    }
    const summaryState = model.get("summary") || {};
    const s = { columns: summaryState.columns || [], rows: summaryState.rows || [] };
    table.replaceChildren();
    const head = element("tr");
    for (const c of s.columns) head.appendChild(element("th", "", c.replaceAll("_", " ")));
    const thead = element("thead");
    thead.appendChild(head);
    const tbody = element("tbody");
    for (const r of s.rows) {
      const tr = element("tr");
      for (const v of r) tr.appendChild(element("td", typeof v === "number" ? "owa-num" : "", fmt(v)));
      tbody.appendChild(tr);
    }
    table.append(thead, tbody);
  }

  function applyTab() {
    const tab = model.get("tab") || "gallery";
    gallery.hidden = tab !== "gallery";
    summary.hidden = tab !== "summary";
    for (const [name, b] of Object.entries(tabButtons)) {
      b.classList.toggle("owa-tab-active", name === tab);
      b.setAttribute("aria-selected", String(name === tab));
    }
    root.dataset.tab = tab;
  }

  const onRows = () => { rebuildOptions(); rebuildCards(); rebuildSummary(); applyView(); };
  const onView = () => applyView();
  const onStatus = () => applyStatus();
  const onTab = () => applyTab();
  const onSummary = () => rebuildSummary();
  const events = {
    "change:rows change:thumbs change:numeric_columns change:classes change:class_field change:has_labels": onRows,
    "change:sort_by change:descending change:filter_class change:filter_correct change:filter_metric change:filter_min change:filter_max change:opened": onView,
    "change:error change:message change:title": onStatus,
    "change:tab": onTab,
    "change:class_means change:summary": onSummary,
  };
  for (const [names, fn] of Object.entries(events)) for (const name of names.split(" ")) model.on(name, fn);
  onRows();
  applyStatus();
  applyTab();
  root.dataset.ready = "true";

  return () => {
    for (const [names, fn] of Object.entries(events)) for (const name of names.split(" ")) model.off?.(name, fn);
    for (const u of [...urls, ...meanUrls]) URL.revokeObjectURL(u);
  };
}

export default { render };
