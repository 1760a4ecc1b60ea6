// The page of `openvocab serve` (see index.html): the form, the server's models and vocabularies, the upload with its
// progress. results.js draws the result. Plain browser JavaScript modules, no build step, no dependencies.
//
// Talks to the same server only: GET /health, /models, /labels, /labels/vocabularies/{name}, /progress/{id} and
// POST /classify (multipart, sent with XMLHttpRequest for upload progress). Every string that comes from the server
// or from the user (labels can hold "<script>") reaches the page through textContent or setAttribute, never
// innerHTML, so it is always shown as text.
import { createResultView, h, num, pct, shortNum } from "/static/results.js";

const POLL_MS = 400;
const STAGES = {
  queued: "Waiting in the queue",
  decoding: "Decoding the video",
  labels: "Encoding the labels",
  classifying: "Classifying",
  done: "Finishing",
  failed: "Failed",
  unknown: "Processing",
};

const $ = (id) => document.getElementById(id);
const ui = {
  form: $("form"), file: $("file"), fileName: $("file-name"), dropzone: $("dropzone"), model: $("model"),
  modelInfo: $("model-info"), source: $("label-source"), labels: $("labels"), labelsHint: $("labels-hint"),
  frames: $("frames"), views: $("views"), segments: $("segments"), multi: $("multi-label"),
  threshold: $("threshold"), classify: $("classify"), progress: $("progress"), upload: $("upload-progress"),
  process: $("process-progress"), status: $("status"), alert: $("alert"), health: $("health"),
  results: $("results"), video: $("video"), videoEmpty: $("video-empty"), summary: $("summary"),
  warnings: $("warnings"), rankingPanel: $("ranking-panel"), mode: $("mode"), bars: $("bars"),
  json: $("download-json"), csv: $("download-csv"), timelinePanel: $("timeline-panel"), legend: $("legend"),
  timeline: $("timeline"), tokenField: $("token-field"), token: $("token"),
  cancel: $("cancel"),
};

const state = {
  file: null, videoUrl: null, models: [], cached: [], typed: "", vocabulary: null,
  xhr: null,
};
const view = createResultView(ui);

// ---------------------------------------------------------------- status line, alert, errors

function setStatus(text) {
  ui.status.textContent = text;
}

function showAlert(text) {
  ui.alert.textContent = text;
  ui.alert.hidden = !text;
}

function fileSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** The server's one-line `detail`, or a plain description of the status. */
function errorDetail(status, body) {
  let detail = "";
  try {
    const parsed = typeof body === "string" ? JSON.parse(body) : body;
    if (parsed && typeof parsed.detail === "string") detail = parsed.detail;
    else if (parsed && Array.isArray(parsed.detail)) {
      detail = parsed.detail.map((d) => (d && d.msg ? `${(d.loc || []).slice(-1)[0]}: ${d.msg}` : String(d))).join("; ");
    }
  } catch (_) {
    /* not JSON: fall through */
  }
  return detail || `the server answered HTTP ${status}`;
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const text = await response.text();
  if (!response.ok) throw new Error(errorDetail(response.status, text));
  return JSON.parse(text);
}

/** A client-made request id for progress polling ([A-Za-z0-9_-]); works outside secure contexts too. */
function requestId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return `page-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

// ---------------------------------------------------------------- server info: health, models, vocabularies

async function loadHealth() {
  try {
    const health = await getJSON("/health");
    const q = health.queue || {};
    ui.health.textContent = `server ${health.status} · queue ${q.running ?? 0} running, ${q.waiting ?? 0} waiting`;
    ui.health.dataset.state = "ok";
    if (health.token_required) ui.tokenField.hidden = false;
  } catch (err) {
    ui.health.textContent = "server unreachable";
    ui.health.dataset.state = "error";
  }
}

async function loadModels() {
  try {
    const { models } = await getJSON("/models");
    state.models = models || [];
  } catch (err) {
    showAlert(`Could not list the models: ${err.message}`);
    return;
  }
  ui.model.replaceChildren(...state.models.map((m) => h("option", { value: m.name, text: m.name, selected: m.default })));
  await onModelChange();
}

function currentModel() {
  return state.models.find((m) => m.name === ui.model.value) || null;
}

async function onModelChange() {
  const model = currentModel();
  if (model) {
    const parts = [(model.modalities || ["rgb"]).join(" + ")];
    parts.push(model.open_vocabulary === false ? "closed set" : "open vocabulary");
    const ml = model.multi_label || {};
    if (Number.isFinite(ml.threshold)) {
      parts.push(`multi-label threshold ${shortNum(ml.threshold)} (${ml.calibrated ? "calibrated" : "default"})`);
      ui.threshold.placeholder = shortNum(ml.threshold);
    }
    ui.modelInfo.textContent = parts.join(" · ");
  }
  await loadVocabularies();
}

async function loadVocabularies() {
  const keep = ui.source.value;
  let info = { vocabularies: [], labels: [] };
  try {
    info = await getJSON(`/labels?model=${encodeURIComponent(ui.model.value)}`);
  } catch (err) {
    /* the page works without saved vocabularies */
  }
  state.cached = Array.isArray(info.labels) ? info.labels : [];
  const options = [h("option", { value: "typed", text: "the box below (one per line)" })];
  if (state.cached.length) {
    options.push(h("option", { value: "cached", text: `labels cached for this model (${state.cached.length})` }));
  }
  const vocabularies = info.vocabularies || [];
  if (vocabularies.length) {
    const group = h("optgroup", { label: "Saved vocabularies" });
    for (const v of vocabularies) group.append(h("option", { value: `vocab:${v.name}`, text: `${v.name} (${v.size})` }));
    options.push(group);
  }
  ui.source.replaceChildren(...options);
  if ([...ui.source.options].some((o) => o.value === keep)) ui.source.value = keep;
  else if (state.vocabulary) useTypedLabels();
}

function useTypedLabels() {
  if (state.vocabulary !== null) ui.labels.value = state.typed;
  state.vocabulary = null;
  ui.labels.readOnly = false;
  ui.source.value = "typed";
  ui.labelsHint.textContent = "One label per line, or one line separated by commas.";
}

async function onSourceChange() {
  const choice = ui.source.value;
  if (choice === "typed") return useTypedLabels();
  if (choice === "cached") {
    useTypedLabels();
    ui.labels.value = state.cached.join("\n");
    ui.labelsHint.textContent = `${state.cached.length} cached labels filled in; edit them freely.`;
    return;
  }
  const value = choice.slice("vocab:".length);
  try {
    const vocab = await getJSON(`/labels/vocabularies/${encodeURIComponent(value)}`);
    if (state.vocabulary === null) state.typed = ui.labels.value;
    state.vocabulary = value;
    ui.labels.value = (vocab.labels || []).join("\n");
    ui.labels.readOnly = true;
    ui.labelsHint.textContent = `Saved vocabulary “${value}”: ${(vocab.labels || []).length} labels, sent by name.`;
    showAlert("");
  } catch (err) {
    showAlert(`Could not load the vocabulary: ${err.message}`);
    useTypedLabels();
  }
}

// ---------------------------------------------------------------- the video file

function setFile(file) {
  if (!file) return;
  state.file = file;
  if (state.videoUrl) URL.revokeObjectURL(state.videoUrl);
  state.videoUrl = URL.createObjectURL(file);
  ui.video.src = state.videoUrl;
  ui.video.hidden = false;
  ui.videoEmpty.hidden = true;
  ui.fileName.textContent = `${file.name} · ${fileSize(file.size)}`;
  ui.dropzone.classList.add("has-file");
  showAlert("");
  setStatus(`Ready: ${file.name}. Enter labels and classify.`);
}

function wireDropzone() {
  ui.file.addEventListener("change", () => setFile(ui.file.files[0]));
  for (const type of ["dragenter", "dragover"]) {
    ui.dropzone.addEventListener(type, (event) => {
      event.preventDefault();
      ui.dropzone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    ui.dropzone.addEventListener(type, () => ui.dropzone.classList.remove("dragging"));
  }
  ui.dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    const files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) {
      try {
        ui.file.files = files;
      } catch (_) {
        /* older browsers: keep our own reference */
      }
      setFile(files[0]);
    }
  });
  // A file dropped elsewhere must not navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
}

// ---------------------------------------------------------------- classify: upload, poll progress, render

function buildForm(id) {
  const form = new FormData();
  form.append("file", state.file, state.file.name);
  if (ui.model.value) form.append("model", ui.model.value);
  if (state.vocabulary !== null) form.append("vocabulary", state.vocabulary);
  else form.append("labels", ui.labels.value);
  form.append("frames", ui.frames.value || "8");
  form.append("views", ui.views.value || "1x1");
  form.append("segments", ui.segments.value || "8");
  form.append("multi_label", ui.multi.checked ? "true" : "false");
  if (ui.multi.checked && ui.threshold.value.trim() !== "") form.append("threshold", ui.threshold.value.trim());
  form.append("thumbnails", "true");
  form.append("request_id", id);
  return form;
}

function setBusy(busy) {
  ui.classify.disabled = busy;
  ui.classify.textContent = busy ? "Classifying…" : "Classify";
  ui.cancel.hidden = !busy;
  ui.results.setAttribute("aria-busy", busy ? "true" : "false");
  ui.progress.hidden = !busy;
}

function pollProgress(id, isDone) {
  const tick = async () => {
    if (isDone()) return;
    try {
      const p = await getJSON(`/progress/${encodeURIComponent(id)}`);
      if (isDone()) return;
      const stage = STAGES[p.stage] || STAGES.unknown;
      if (p.stage === "queued" && Number.isInteger(p.queue_position)) {
        setStatus(`${stage} (position ${p.queue_position})…`);
      } else if (p.stage !== "unknown" || ui.upload.value >= 1) {
        setStatus(`${stage}… ${Math.round(100 * (p.fraction || 0))} %`);
      }
      if (Number.isFinite(p.fraction)) ui.process.value = p.fraction;
    } catch (_) {
      /* progress is a courtesy: the result still arrives */
    }
    if (!isDone()) setTimeout(tick, POLL_MS);
  };
  tick(); // at once: the server knows the id as soon as the upload starts
}

function classify() {
  showAlert("");
  if (!state.file) {
    showAlert("Choose a video first.");
    ui.file.focus();
    return;
  }
  if (state.vocabulary === null && !ui.labels.value.trim()) {
    showAlert("Enter at least one label (one per line), or pick a saved vocabulary.");
    ui.labels.focus();
    return;
  }
  const id = requestId();
  const xhr = new XMLHttpRequest();
  state.xhr = xhr;
  let done = false;
  const finish = () => {
    done = true;
    state.xhr = null;
    setBusy(false);
  };
  ui.upload.value = 0;
  ui.process.value = 0;
  setBusy(true);
  setStatus("Uploading… 0 %");

  xhr.upload.addEventListener("progress", (event) => {
    if (event.lengthComputable && event.total > 0) {
      ui.upload.value = event.loaded / event.total;
      setStatus(`Uploading… ${Math.round((100 * event.loaded) / event.total)} %`);
    }
  });
  xhr.upload.addEventListener("load", () => {
    ui.upload.value = 1;
    setStatus("Uploaded; processing…");
  });
  xhr.addEventListener("load", () => {
    finish();
    ui.process.value = 1;
    if (xhr.status === 200) {
      let result;
      try {
        result = JSON.parse(xhr.responseText);
      } catch (_) {
        showAlert("The server sent a result that is not JSON.");
        setStatus("Failed.");
        return;
      }
      view.render(result);
      if (result.error) showAlert(`${result.path}: ${result.error}`);
      const top = (result.labels || [])[0];
      setStatus(top ? `Done in ${num(result.elapsed_s, 1)} s: ${top.label} (${pct(top.score)}).` : "Done.");
      if (ui.results.getBoundingClientRect().top > window.innerHeight * 0.6) {
        // one column (a narrow window): bring the result into view
        const reduce = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
        ui.results.scrollIntoView({ behavior: reduce ? "auto" : "smooth", block: "start" });
      }
      loadHealth();
      return;
    }
    let message = errorDetail(xhr.status, xhr.responseText);
    const retry = xhr.getResponseHeader("Retry-After");
    if (xhr.status === 503 && retry) message += ` (try again in ${retry} s)`;
    if (xhr.status === 401) {
      ui.tokenField.hidden = false;
      ui.token.focus();
    }
    showAlert(`Error ${xhr.status}: ${message}`);
    setStatus("Failed.");
  });
  xhr.addEventListener("error", () => {
    finish();
    showAlert("Could not reach the server: is `openvocab serve` still running?");
    setStatus("Failed.");
  });
  xhr.addEventListener("abort", () => {
    finish();
    setStatus("Cancelled.");
  });
  xhr.open("POST", "/classify");
  xhr.setRequestHeader("Accept", "application/json");
  if (ui.token.value.trim()) xhr.setRequestHeader("Authorization", `Bearer ${ui.token.value.trim()}`);
  xhr.send(buildForm(id));
  pollProgress(id, () => done);
}

// ---------------------------------------------------------------- wiring

function init() {
  wireDropzone();
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!state.xhr) classify();
  });
  ui.cancel.addEventListener("click", () => state.xhr && state.xhr.abort());
  ui.model.addEventListener("change", onModelChange);
  ui.source.addEventListener("change", onSourceChange);
  ui.multi.addEventListener("change", () => {
    ui.threshold.disabled = !ui.multi.checked;
  });
  ui.labels.addEventListener("input", () => {
    if (state.vocabulary === null) state.typed = ui.labels.value;
  });
  ui.threshold.disabled = !ui.multi.checked;
  loadHealth();
  loadModels();
}

init();
