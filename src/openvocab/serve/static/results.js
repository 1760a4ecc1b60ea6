// Rendering of one classification result on the page of `openvocab serve`: summary, ranked bars, the labels x time
// heatmap with thumbnails (its cells seek the video), and the JSON / CSV downloads. An ES module used by app.js.
// Text from the server (labels can hold "<script>") is only ever set with textContent or setAttribute.

/** An element with attributes (strings via setAttribute) and children (nodes or strings as text nodes). */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.className = value;
    else if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

export const pct = (score) => `${(100 * score).toFixed(1)} %`;
export const num = (value, digits = 2) => (Number.isFinite(value) ? value.toFixed(digits) : "–");
export const shortNum = (value) => (Number.isFinite(value) ? String(Number(value.toFixed(4))) : "–");
const timeRange = (a, b) => `${num(a, 1)}–${num(b, 1)} s`;
const MAX_ROWS = 15; // bars and timeline rows shown before "Show all"

/** The timeline of a result: the server's `timeline`, or one built from `segments` when it is absent. */
function timelineOf(result) {
  if (result.timeline && Array.isArray(result.timeline.labels)) return result.timeline;
  const segments = result.segments || [];
  const labels = (result.labels || []).map((l) => l.label);
  return {
    labels,
    start_s: segments.map((s) => s.start_s),
    end_s: segments.map((s) => s.end_s),
    scores: labels.map((label) => segments.map((s) => {
      const hit = (s.labels || []).find((l) => l.label === label);
      return hit ? hit.score : NaN;
    })),
  };
}

function isMulti(result) {
  return Boolean(result.multi_label) && Number.isFinite(result.threshold);
}

// Colour of a score in [0, 1]: from the page background through blue to deep indigo.
const RAMP = [[244, 246, 251], [199, 215, 254], [129, 140, 248], [79, 70, 229], [49, 26, 130]];
function scoreColour(score) {
  const t = Math.max(0, Math.min(1, Number.isFinite(score) ? score : 0)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(t));
  const f = t - i;
  const c = RAMP[i].map((a, k) => Math.round(a + (RAMP[i + 1][k] - a) * f));
  return { background: `rgb(${c.join(",")})`, dark: t > 1.6 };
}


export const CSV_COLUMNS = ["path", "scope", "start_s", "end_s", "rank", "label", "score", "predicted", "error"];

/** `x` with `digits` decimals as Python formats it: exact value, ties to even (toFixed sends ties up). */
function fixedHalfEven(x, digits) {
  const rounded = x.toFixed(digits);
  const exact = x.toFixed(digits + 40); // exact for every double in the range of scores and times
  const cut = exact.indexOf(".") + digits + 1;
  if (!/^50*$/.test(exact.slice(cut))) return rounded;
  const down = exact.slice(0, cut).replace(/\.$/, "");
  return Number(down.slice(-1)) % 2 === 0 ? down : rounded;
}

/** A number as Python's str(round(x, 3)) writes it (0.0, 1.5, 2.125), so page and CLI CSVs match. */
function pyRound3(x) {
  const text = fixedHalfEven(x, 3).replace(/0+$/, "");
  return text.endsWith(".") ? `${text}0` : text;
}

function csvField(value) {
  const s = value === undefined || value === null ? "" : String(value);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Long-format rows like `openvocab classify --format csv`: the clip's ranked labels, then each segment's. */
export function toCsv(result) {
  const rows = [];
  const predicted = new Set(result.predicted || []);
  if (result.error) rows.push({ path: result.path, scope: "clip", error: result.error });
  (result.labels || []).forEach((l, i) => rows.push({
    path: result.path, scope: "clip", start_s: "0.0", end_s: pyRound3(result.duration_s || 0), rank: i + 1,
    label: l.label, score: fixedHalfEven(l.score, 6), predicted: predicted.has(l.label) ? 1 : 0,
  }));
  for (const seg of result.segments || []) {
    (seg.labels || []).forEach((l, i) => rows.push({
      path: result.path, scope: "segment", start_s: pyRound3(seg.start_s), end_s: pyRound3(seg.end_s),
      rank: i + 1, label: l.label, score: fixedHalfEven(l.score, 6),
    }));
  }
  const lines = [CSV_COLUMNS.join(",")];
  for (const row of rows) lines.push(CSV_COLUMNS.map((c) => csvField(row[c])).join(","));
  return `${lines.join("\n")}\n`;
}

/**
 * The result area of the page (`ui`: the elements by role, see app.js). `render(result)` draws a response of
 * POST /classify; clicking or pressing Enter on a timeline cell seeks `ui.video` to that segment's start.
 */
export function createResultView(ui) {
  const state = { result: null, showAllBars: false, showAllRows: false, columns: [], downloadUrls: [], renders: 0 };

  function render(result) {
    state.result = result;
    state.showAllBars = false;
    state.showAllRows = false;
    renderSummary(result);
    renderBars();
    renderTimeline();
    renderDownloads(result);
    ui.rankingPanel.hidden = false;
    ui.timelinePanel.hidden = !(result.segments || []).length && !(result.timeline && result.timeline.labels);
    ui.results.dataset.renders = String(++state.renders); // lets tests and scripts wait for a fresh result
  }

  function renderSummary(result) {
    const rows = [
      ["File", result.path],
      ["Model", result.model],
      ["Duration", `${num(result.duration_s, 1)} s`],
      ["Frames", `${result.frames_sampled} sampled · ${result.views} views`],
      ["Inputs", (result.modalities || []).join(" + ") + (result.scoring ? ` · ${result.scoring}` : "")],
      ["Time", `${num(result.elapsed_s, 2)} s`],
    ];
    ui.summary.replaceChildren(
      ...rows.filter(([, v]) => v !== undefined && v !== null && v !== "").flatMap(([k, v]) => [
        h("dt", { text: k }),
        h("dd", { text: v }),
      ]),
    );
    ui.summary.hidden = false;
    const warnings = result.warnings || [];
    ui.warnings.replaceChildren(...warnings.map((w) => h("li", { text: w })));
    ui.warnings.hidden = !warnings.length;
  }

  function renderBars() {
    const result = state.result;
    const labels = result.labels || [];
    const multi = isMulti(result);
    const predicted = new Set(result.predicted || []);
    if (multi) {
      const cal = result.calibration && result.calibration.source ? ` · ${result.calibration.source}` : "";
      ui.mode.textContent = `multi-label · threshold ${shortNum(result.threshold)}${cal} · ${predicted.size} passing`;
    } else {
      ui.mode.textContent = `single label · softmax over ${labels.length} labels`;
    }
    ui.mode.dataset.threshold = multi ? String(result.threshold) : "";
    const shown = state.showAllBars ? labels : labels.slice(0, MAX_ROWS);
    const items = shown.map((entry, i) => {
      const passing = multi ? entry.score >= result.threshold : predicted.has(entry.label);
      const width = `${Math.max(0, Math.min(1, entry.score)) * 100}%`;
      const track = h("div", { class: "bar-track", "aria-hidden": "true" },
        h("div", { class: "bar-fill", style: { width } }),
        multi ? h("div", { class: "bar-threshold", style: { left: `${result.threshold * 100}%` } }) : null);
      return h("li", {
        class: `bar${passing ? " passing" : ""}${multi ? " multi" : ""}`,
        "data-testid": "bar",
        "data-passing": multi ? String(passing) : null,
      },
      h("span", { class: "bar-rank", text: String(i + 1), "aria-hidden": "true" }),
      h("span", { class: "bar-name" },
        h("span", { class: "bar-label", "data-testid": "bar-label", text: entry.label }),
        multi && passing ? h("span", { class: "bar-tick", "data-testid": "bar-tick", title: "passes the threshold" }, "✓",
          h("span", { class: "visually-hidden", text: " passes the threshold" })) : null),
      track,
      h("span", { class: "bar-value", "data-testid": "bar-value", text: pct(entry.score) }));
    });
    if (labels.length > MAX_ROWS) {
      items.push(h("li", { class: "more" }, h("button", {
        type: "button",
        class: "link",
        text: state.showAllBars ? "Show the top " + MAX_ROWS : `Show all ${labels.length} labels`,
        onclick: () => {
          state.showAllBars = !state.showAllBars;
          renderBars();
        },
      })));
    }
    ui.bars.replaceChildren(...items);
  }

  function renderTimeline() {
    const result = state.result;
    const tl = timelineOf(result);
    const multi = isMulti(result);
    const starts = tl.start_s || [];
    const ends = tl.end_s || [];
    state.columns = starts.map((s, j) => [s, ends[j]]);
    ui.legend.replaceChildren(
      h("span", { text: "0 %" }),
      h("span", { class: "legend-ramp", "aria-hidden": "true" }),
      h("span", { text: "100 %" }),
      ...(multi ? [h("span", { class: "legend-pass", text: `● ≥ threshold ${shortNum(result.threshold)}` })] : []),
    );

    const head = h("tr", {}, h("th", { scope: "col", class: "corner", text: "label \\ time" }),
      ...starts.map((s, j) => h("th", {
        scope: "col", class: "time", "data-col": j, "data-testid": "timeline-time", text: timeRange(s, ends[j]),
      })));

    const rows = state.showAllRows ? tl.labels : tl.labels.slice(0, MAX_ROWS);
    const body = rows.map((label, i) => h("tr", {},
      h("th", { scope: "row", class: "row-label", "data-testid": "timeline-label", text: label, title: label }),
      ...starts.map((start, j) => {
        const score = ((tl.scores || [])[i] || [])[j];
        const colour = scoreColour(score);
        const passing = multi && score >= result.threshold;
        const text = Number.isFinite(score) ? `${Math.round(100 * score)}` : "–";
        return h("td", { class: "cell-wrap" }, h("button", {
          type: "button",
          class: `cell${colour.dark ? " dark" : ""}${passing ? " passing" : ""}`,
          style: { background: colour.background },
          tabindex: i === 0 && j === 0 ? "0" : "-1",
          "data-testid": "timeline-cell",
          "data-row": i,
          "data-col": j,
          "data-start": start,
          "data-score": Number.isFinite(score) ? score : "",
          "aria-label": `${label}, ${timeRange(start, ends[j])}: ${Number.isFinite(score) ? pct(score) : "no score"}${passing ? ", passes the threshold" : ""}`,
          text,
        }));
      })));

    const thumbs = thumbnailRow(result.thumbnails || [], starts, ends);
    const sections = [h("thead", {}, head), h("tbody", {}, ...body)];
    if (tl.labels.length > MAX_ROWS) {
      sections.push(h("tbody", { class: "more" }, h("tr", {}, h("td", { colspan: starts.length + 1 }, h("button", {
        type: "button",
        class: "link",
        text: state.showAllRows ? "Show the top " + MAX_ROWS : `Show all ${tl.labels.length} rows`,
        onclick: () => {
          state.showAllRows = !state.showAllRows;
          renderTimeline();
        },
      })))));
    }
    if (thumbs) sections.push(h("tfoot", {}, thumbs));
    ui.timeline.replaceChildren(...sections);
    markCurrentColumn();
  }

  /** The row of frame thumbnails under the timeline: each thumbnail in the column of the segment it falls in. */
  function thumbnailRow(thumbnails, starts, ends) {
    const safe = thumbnails.filter((t) => t && typeof t.image === "string" && t.image.startsWith("data:image/"));
    if (!safe.length || !starts.length) return null;
    const columns = starts.map(() => []);
    safe.forEach((t, k) => {
      let j = starts.findIndex((s, c) => t.time_s >= s && t.time_s < ends[c]);
      if (j < 0) j = safe.length === starts.length ? k : starts.length - 1;
      columns[j].push(t);
    });
    return h("tr", { class: "thumbs" }, h("th", { scope: "row", class: "row-label", text: "frames" }),
      ...columns.map((list, j) => h("td", { "data-col": j }, ...list.map((t) => h("button", {
        type: "button",
        class: "thumb",
        "aria-label": `play from ${num(t.time_s, 1)} s`,
        onclick: () => seek(t.time_s),
      }, h("img", { src: t.image, alt: `frame at ${num(t.time_s, 1)} s`, "data-testid": "thumbnail", "data-time": t.time_s }))))));
  }

  function seek(seconds) {
    if (!Number.isFinite(seconds)) return;
    ui.video.dataset.seekRequest = String(seconds);
    if (ui.video.src) {
      try {
        ui.video.currentTime = seconds;
      } catch (_) {
        /* not seekable yet */
      }
    }
  }

  function onTimelineClick(event) {
    const cell = event.target.closest("button.cell");
    if (!cell) return;
    moveFocus(cell);
    seek(Number(cell.dataset.start));
  }

  function moveFocus(cell) {
    for (const c of ui.timeline.querySelectorAll("button.cell[tabindex='0']")) c.tabIndex = -1;
    cell.tabIndex = 0;
    cell.focus();
  }

  /** Arrow keys, Home and End move between timeline cells (one tab stop for the whole grid). */
  function onTimelineKey(event) {
    const cell = event.target.closest("button.cell");
    if (!cell) return;
    let row = Number(cell.dataset.row);
    let col = Number(cell.dataset.col);
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (moves[event.key]) {
      row += moves[event.key][0];
      col += moves[event.key][1];
    } else if (event.key === "Home") col = 0;
    else if (event.key === "End") col = state.columns.length - 1;
    else return;
    const next = ui.timeline.querySelector(`button.cell[data-row="${row}"][data-col="${col}"]`);
    if (next) {
      event.preventDefault();
      moveFocus(next);
    }
  }

  /** Highlight the timeline column that holds the video's current time. */
  function markCurrentColumn() {
    const t = ui.video.currentTime + 1e-3; // the element reports a seek to 1.6 as 1.599999
    const col = state.columns.findIndex(([s, e], j) => t >= s && (t < e || j === state.columns.length - 1));
    for (const node of ui.timeline.querySelectorAll(".current")) node.classList.remove("current");
    if (col < 0 || !ui.video.src) return;
    for (const node of ui.timeline.querySelectorAll(`[data-col="${col}"]`)) {
      (node.tagName === "BUTTON" ? node.parentElement : node).classList.add("current");
    }
  }

  function renderDownloads(result) {
    for (const url of state.downloadUrls) URL.revokeObjectURL(url);
    const stem = String(result.path || "result").replace(/^.*[\\/]/, "").replace(/\.[^.]*$/, "") || "result";
    const json = URL.createObjectURL(new Blob([JSON.stringify(result, null, 2)], { type: "application/json" }));
    const csv = URL.createObjectURL(new Blob([toCsv(result)], { type: "text/csv" }));
    state.downloadUrls = [json, csv];
    ui.json.href = json;
    ui.json.download = `${stem}.openvocab.json`;
    ui.csv.href = csv;
    ui.csv.download = `${stem}.openvocab.csv`;
  }

  ui.timeline.addEventListener("click", onTimelineClick);
  ui.timeline.addEventListener("keydown", onTimelineKey);
  ui.video.addEventListener("timeupdate", markCurrentColumn);
  ui.video.addEventListener("seeked", markCurrentColumn);
  return { render, seek };
}
