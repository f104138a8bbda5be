// semsql serve: a few lines of plain JavaScript (no build step). Forms that change data post
// to the API with the page's CSRF token; the search box sends long text as an article.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

async function api(url, options = {}) {
  const headers = Object.assign({ "X-CSRF-Token": csrf() }, options.headers || {});
  const response = await fetch(url, Object.assign({}, options, { headers, credentials: "same-origin" }));
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error((body.error && body.error.message) || response.statusText);
  }
  return body;
}

function text(tag, content, className) {
  const node = document.createElement(tag);
  node.textContent = content;
  if (className) node.className = className;
  return node;
}

// Search: long or multi-line text is an article; empty fields stay out of the URL.
function setUpSearch() {
  const form = document.getElementById("search-form");
  if (!form) return;
  form.addEventListener("submit", () => {
    const box = document.getElementById("query");
    const article = document.getElementById("article-field");
    const value = box.value.trim();
    const isArticle = value.length > 280 || value.includes("\n");
    article.value = isArticle ? value : "";
    box.disabled = isArticle || !value;
    for (const field of form.elements) {
      if (field.name && !field.disabled && field.value === "" && field.type !== "checkbox") field.disabled = true;
    }
  });
  // A click on a facet filters at once.
  const facets = form.querySelector(".facets");
  if (facets) facets.addEventListener("change", () => form.requestSubmit());
}

// A video's moment, in seconds, as h:mm:ss (what the page's own tiles show).
function moment(seconds) {
  const whole = Math.floor(seconds);
  const pad = (n) => String(n).padStart(2, "0");
  return `${Math.floor(whole / 3600)}:${pad(Math.floor(whole / 60) % 60)}:${pad(whole % 60)}`;
}

function tile(hit) {
  const figure = document.createElement("figure");
  figure.className = "tile";
  figure.dataset.asset = hit.asset_id;
  const link = document.createElement("a");
  link.href = `/assets/${hit.asset_id}`;
  const image = document.createElement("img");
  const at = hit.best_at == null ? "" : `&at=${hit.best_at}`;
  image.src = `/api/assets/${hit.asset_id}/thumbnail?size=256${at}`;
  image.alt = hit.caption || hit.uri;
  link.appendChild(image);
  figure.appendChild(link);
  const caption = document.createElement("figcaption");
  if (hit.media_type === "video") {
    caption.appendChild(text("span", hit.best_at == null ? "▶ video" : `▶ ${moment(hit.best_at)}`, "moment"));
  }
  caption.appendChild(text("span", hit.score == null ? "" : hit.score.toFixed(3), "score"));
  const badges = document.createElement("span");
  badges.className = "badges";
  for (const signal of [].concat(hit.matched_by)) {
    badges.appendChild(text("span", signal, `badge signal-${signal}`));
  }
  caption.appendChild(badges);
  const tags = (hit.tags || []).join(", ");
  caption.appendChild(text("span", hit.caption || tags || hit.uri.split("/").pop(), "caption"));
  if (hit.people && hit.people.length) caption.appendChild(text("span", hit.people.join(", "), "people"));
  figure.appendChild(caption);
  return figure;
}

// Infinite scroll: when the end of the grid comes into view (or "more" is clicked), the next
// hits of the same search (GET /api/search with the page's own parameters and the next
// offset) are added to it. The URL then asks for every hit shown (its k grows, up to the
// API's 1000), so that a reload or a shared link shows the same grid.
const MAX_K = 1000;

function setUpMore() {
  const grid = document.getElementById("results");
  const next = document.getElementById("next-page");
  if (!grid || !next) return;
  const params = new URLSearchParams(window.location.search);
  const start = Number(params.get("offset") || 0);
  const step = Number(params.get("k") || grid.dataset.k || 20);
  const seen = new Set([...grid.querySelectorAll(".tile")].map((t) => t.dataset.asset));
  let shown = seen.size, busy = false, finished = false;
  const observer = "IntersectionObserver" in window
    ? new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting)) load();
    }, { rootMargin: "400px" })
    : null;
  const more = document.createElement("button");
  more.id = "load-more";
  more.type = "button";
  more.textContent = "more";
  next.after(more);
  next.hidden = true;
  const load = async () => {
    if (busy || finished) return;
    busy = true;
    more.textContent = "loading …";
    const query = new URLSearchParams(params);
    query.set("offset", String(start + shown));
    query.set("k", String(Math.min(step, MAX_K - shown)));
    query.set("partial", "true");  // as the page: without a worker, keywords and names alone
    try {
      const found = await api(`/api/search?${query}`);
      for (const hit of found.hits) {
        if (seen.has(String(hit.asset_id))) continue;
        seen.add(String(hit.asset_id));
        grid.appendChild(tile(hit));
      }
      shown += found.hits.length;
      finished = found.hits.length < Number(query.get("k"));
      const url = new URLSearchParams(params);
      url.set("k", String(shown));
      history.replaceState(null, "", `?${url}`);
      more.textContent = "more";
      if (finished) more.remove();
      if (shown >= MAX_K && !finished) {  // the URL cannot ask for more at once: pages from here
        const page = new URLSearchParams(params);
        page.set("offset", String(start + shown));
        page.set("k", String(step));
        next.href = `?${page}`;
        next.hidden = false;
        more.remove();
        finished = true;
      }
      if (!finished && observer) {  // still in view: the observer says so again
        observer.unobserve(more);
        observer.observe(more);
      }
    } catch (error) {
      more.textContent = `cannot load more: ${error.message} (click to try again)`;
    } finally {
      busy = false;
    }
  };
  more.addEventListener("click", load);
  if (observer) observer.observe(more);
}

// The drop zone: look-alikes of an image that need not be stored.
function setUpDropZone() {
  const zone = document.getElementById("dropzone");
  if (!zone) return;
  const search = async (file) => {
    const data = new FormData();
    data.append("file", file);
    data.append("by", "both");
    zone.textContent = `searching for images like ${file.name} …`;
    try {
      const found = await api("/api/search/image", { method: "POST", body: data });
      const grid = document.getElementById("results");
      grid.replaceChildren(...found.hits.map(tile));
      zone.textContent = `${found.hits.length} images like ${file.name}` +
        (found.notices.length ? ` (${found.notices.join("; ")})` : "");
    } catch (error) {
      zone.textContent = `cannot search by ${file.name}: ${error.message}`;
    }
  };
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer.files.length) search(event.dataTransfer.files[0]);
  });
  document.getElementById("image-input").addEventListener("change", (event) => {
    if (event.target.files.length) search(event.target.files[0]);
  });
}

// Face boxes on the asset page: stored in pixels of the upright original.
function placeFaceBoxes() {
  const picture = document.getElementById("picture");
  const image = document.getElementById("asset-image");
  if (!picture || !image) return;
  const place = () => {
    let width = Number(picture.dataset.width), height = Number(picture.dataset.height);
    const landscape = image.naturalWidth >= image.naturalHeight;
    if (width && height && (width >= height) !== landscape) [width, height] = [height, width];
    width = width || image.naturalWidth;
    height = height || image.naturalHeight;
    for (const box of picture.querySelectorAll(".face-box")) {
      const [x0, y0, x1, y1] = box.dataset.box.split(",").map(Number);
      box.style.left = `${(100 * x0) / width}%`;
      box.style.top = `${(100 * y0) / height}%`;
      box.style.width = `${(100 * (x1 - x0)) / width}%`;
      box.style.height = `${(100 * (y1 - y0)) / height}%`;
      box.classList.add("placed");
    }
  };
  if (image.complete && image.naturalWidth) place(); else image.addEventListener("load", place);
}

// Where a form says how it went: its own .result, else its group's, else a new one.
function resultOf(form) {
  const found = form.querySelector(".result") || (form.closest(".group") || form).querySelector(".result");
  if (found) return found;
  const made = text("span", "", "result");
  form.appendChild(made);
  return made;
}

// Forms that change data: JSON (or the ids they carry) to the API, with the CSRF token (a
// DELETE, data-method, sends no body).
function setUpApiForms() {
  for (const form of document.querySelectorAll("form.api-form")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = resultOf(form);
      const body = {};
      for (const [key, value] of new FormData(form).entries()) if (value !== "") body[key] = value;
      const ids = (form.dataset.ids || "").split(",").filter(Boolean).map(Number);
      if (ids.length) body.asset_ids = ids;
      const method = form.dataset.method || "POST";
      const request = method === "DELETE" ? { method }
        : { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
      try {
        const answer = await api(form.dataset.action, request);
        result.textContent = describe(answer);
        form.classList.add("done");
        markDeleted(form, answer);
        if (form.dataset.reload) setTimeout(() => window.location.reload(), 600);
      } catch (error) {
        result.textContent = error.message;
      }
    });
  }
}

// Duplicates: the copies whose rows were deleted are greyed out. A form of their group is
// spent when what it would delete is gone already, or is every copy left (the suggested
// copy's "keep" once that copy is deleted, say).
function markDeleted(form, answer) {
  if (answer.deleted === undefined) return;
  const group = form.closest(".group");
  if (!group) return;
  for (const gone of answer.deleted) {
    const tile = group.querySelector(`.tile[data-asset="${gone.asset_id}"]`);
    if (tile) tile.classList.add("deleted");
  }
  const left = [...group.querySelectorAll(".tile:not(.deleted)")].map((tile) => tile.dataset.asset);
  for (const other of group.querySelectorAll("form.api-form")) {
    const wanted = (other.dataset.ids || "").split(",").filter((id) => left.includes(id));
    if (other.closest(".tile.deleted") || !wanted.length || left.every((id) => wanted.includes(id))) {
      other.querySelector("button").disabled = true;
    }
  }
}

function describe(answer) {
  if (answer.faces_matched !== undefined) return `${answer.faces_matched} faces are now ${answer.name}`;
  if (answer.restored !== undefined) return `may be ${answer.restored} again: now ${answer.person || "nobody"}`;
  if (answer.rejected !== undefined) return `not ${answer.rejected}` + (answer.person ? `: now ${answer.person}` : ": now nobody");
  if (answer.faces_moved !== undefined) return `${answer.faces_moved} faces moved into ${answer.into !== undefined ? answer.into : "cluster " + answer.cluster_id}`;
  if (answer.faces_changed !== undefined) return `threshold ${answer.match_threshold}: ${answer.faces_changed} faces changed person`;
  if (answer.clusters !== undefined) return `split into clusters ${answer.clusters.join(", ")}`;
  if (answer.queued !== undefined) return `${answer.queued} tasks queued again`;
  if (answer.deleted !== undefined) {
    const count = answer.deleted.length;
    return `${count} asset row${count === 1 ? "" : "s"} deleted (files stay on disk)`;
  }
  return "done";
}

// Upload: one job, followed until it completes or fails.
function setUpUpload() {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const status = document.getElementById("upload-status");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.textContent = "uploading …";
    try {
      // The fields before the files: the server then ingests each file as it arrives.
      const body = new FormData();
      for (const [key, value] of new FormData(form)) if (key !== "files") body.append(key, value);
      for (const file of form.elements.files.files) body.append("files", file);
      const accepted = await api("/api/assets", { method: "POST", body });
      status.textContent = `job ${accepted.job_id}: ${accepted.status}`;
      follow(accepted.job_id, status);
    } catch (error) {
      status.textContent = `upload refused: ${error.message}`;
    }
  });
}

async function follow(jobId, status) {
  const job = await api(`/api/jobs/${jobId}`);
  const counts = `${job.new_count} new, ${job.updated_count} updated, ${job.skipped_count} skipped, ${job.failed_count} failed`;
  status.replaceChildren(text("span", `job ${jobId}: `), text("span", job.status, `status status-${job.status}`), text("span", ` (${counts})`));
  status.dataset.status = job.status;
  for (const error of job.errors) status.appendChild(text("p", `${error.uri.split("/").pop()}: ${error.error}`, "warning"));
  for (const asset of job.assets) {
    const link = text("a", ` asset ${asset.asset_id} (${asset.status})`);
    link.href = `/assets/${asset.asset_id}`;
    status.appendChild(link);
  }
  if (job.status !== "completed" && job.status !== "failed") setTimeout(() => follow(jobId, status), 500);
}

document.addEventListener("DOMContentLoaded", () => {
  setUpSearch();
  setUpMore();
  setUpDropZone();
  placeFaceBoxes();
  setUpApiForms();
  setUpUpload();
});
