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
}

function tile(hit) {
  const figure = document.createElement("figure");
  figure.className = "tile";
  figure.dataset.asset = hit.asset_id;
  const link = document.createElement("a");
  link.href = `/assets/${hit.asset_id}`;
  const image = document.createElement("img");
  image.src = `/api/assets/${hit.asset_id}/thumbnail?size=256`;
  image.alt = hit.caption || hit.uri;
  link.appendChild(image);
  figure.appendChild(link);
  const caption = document.createElement("figcaption");
  caption.appendChild(text("span", hit.score == null ? "" : hit.score.toFixed(3), "score"));
  const badges = document.createElement("span");
  badges.className = "badges";
  for (const signal of [].concat(hit.matched_by)) {
    badges.appendChild(text("span", signal, `badge signal-${signal}`));
  }
  caption.appendChild(badges);
  caption.appendChild(text("span", hit.caption || hit.uri.split("/").pop(), "caption"));
  figure.appendChild(caption);
  return figure;
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

// Forms that change data: JSON (or the ids they carry) to the API, with the CSRF token.
function setUpApiForms() {
  for (const form of document.querySelectorAll("form.api-form")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = resultOf(form);
      const body = {};
      for (const [key, value] of new FormData(form).entries()) if (value !== "") body[key] = value;
      const ids = (form.dataset.ids || "").split(",").filter(Boolean).map(Number);
      if (ids.length) body.asset_ids = ids;
      try {
        const answer = await api(form.dataset.action, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
        });
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

// Duplicates: the copies whose rows were deleted are greyed out, and their group's forms
// that would delete them again are spent.
function markDeleted(form, answer) {
  if (answer.deleted === undefined) return;
  const group = form.closest(".group") || document;
  for (const gone of answer.deleted) {
    const tile = group.querySelector(`.tile[data-asset="${gone.asset_id}"]`);
    if (tile) tile.classList.add("deleted");
  }
  const deleted = (id) => group.querySelector(`.tile.deleted[data-asset="${id}"]`);
  for (const other of group.querySelectorAll("form.api-form")) {
    const wanted = (other.dataset.ids || "").split(",").filter(Boolean);
    if (other.closest(".tile.deleted") || (wanted.length && wanted.every(deleted))) {
      other.querySelector("button").disabled = true;
    }
  }
}

function describe(answer) {
  if (answer.faces_matched !== undefined) return `${answer.faces_matched} faces are now ${answer.name}`;
  if (answer.rejected !== undefined) return `not ${answer.rejected}` + (answer.person ? `: now ${answer.person}` : ": now nobody");
  if (answer.faces_moved !== undefined) return `${answer.faces_moved} faces moved into ${answer.into !== undefined ? answer.into : "cluster " + answer.cluster_id}`;
  if (answer.faces_changed !== undefined) return `threshold ${answer.match_threshold}: ${answer.faces_changed} faces changed person`;
  if (answer.clusters !== undefined) return `split into clusters ${answer.clusters.join(", ")}`;
  if (answer.queued !== undefined) return `${answer.queued} tasks queued again`;
  if (answer.deleted !== undefined) return `${answer.deleted.length} asset rows deleted (files stay on disk)`;
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
      const accepted = await api("/api/assets", { method: "POST", body: new FormData(form) });
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
  setUpDropZone();
  placeFaceBoxes();
  setUpApiForms();
  setUpUpload();
});
