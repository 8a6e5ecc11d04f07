// Detail page: save the analysis and toggle the bookmark without a reload, load more steps,
// and keyboard shortcuts. Without JavaScript the same forms post and the links navigate.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("content-main");
  const api = root.dataset.api;
  const csrf = () => document.querySelector("input[name=csrfmiddlewaretoken]").value;
  const status = document.getElementById("save-status");

  const patch = async (body) => {
    const response = await fetch(api, {
      method: "PATCH",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf(), Accept: "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      const text = await response.text();
      const error = new Error(`${response.status}: ${text}`);
      if (response.status === 400) {
        try {
          error.fields = JSON.parse(text);
        } catch {
          // not JSON: the message above says it
        }
      }
      throw error;
    }
    return response.json();
  };

  // The API's field errors shown next to their fields, as the form without JavaScript shows them.
  const showErrors = (errors) => {
    for (const list of form.querySelectorAll("ul.errorlist")) list.remove();
    for (const [name, messages] of Object.entries(errors || {})) {
      const field = form.elements[name.endsWith("_tags") ? "tags" : name];
      if (!field || !Array.isArray(messages)) continue;
      const list = document.createElement("ul");
      list.className = "errorlist";
      list.id = `error-${field.name}`;
      for (const message of messages) {
        const item = document.createElement("li");
        item.textContent = message;
        list.append(item);
      }
      field.after(list);
    }
  };

  // Only what the user changed since the form was filled is sent: tags as additions and removals,
  // so an edit made meanwhile by someone else (another field, another tag) is kept, not overwritten.
  const form = document.getElementById("annotation-form");
  const fields = ["is_success", "category", "root_cause", "notes"];
  const tagLines = (text) => [...new Set(text.split("\n").map((tag) => tag.trim()).filter(Boolean))];
  const current = () => {
    const values = Object.fromEntries(fields.map((name) => [name, form.elements[name].value.trim()]));
    values.tags = tagLines(form.elements.tags.value);
    return values;
  };
  const show = (saved) => {
    form.elements.is_success.value = saved.is_success === null ? "" : String(saved.is_success);
    for (const name of ["category", "root_cause", "notes"]) form.elements[name].value = saved[name] || "";
    form.elements.tags.value = saved.tags.join("\n");
    form.elements.tags.rows = saved.tags.length + 1;
  };
  let baseline = current();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const now = current();
    const body = {};
    for (const name of fields) {
      if (now[name] === baseline[name]) continue;
      body[name] = name === "is_success" ? (now[name] === "" ? null : now[name] === "true") : now[name] || null;
    }
    const added = now.tags.filter((tag) => !baseline.tags.includes(tag));
    const removed = baseline.tags.filter((tag) => !now.tags.includes(tag));
    if (added.length) body.add_tags = added;
    if (removed.length) body.remove_tags = removed;
    if (!Object.keys(body).length) {
      status.textContent = "nothing changed";
      return;
    }
    status.textContent = "saving…";
    try {
      const saved = await patch(body);
      showErrors({});
      show(saved);
      baseline = current();
      status.textContent = `saved ${new Date(saved.updated_at).toLocaleTimeString()}`;
    } catch (error) {
      showErrors(error.fields);
      status.textContent = error.fields ? "not saved: correct the fields marked below" : `not saved: ${error.message}`;
    }
  });

  const bookmark = document.getElementById("bookmark-toggle");
  const showBookmark = (on) => {
    bookmark.dataset.bookmarked = on ? "true" : "false";
    bookmark.classList.toggle("on", on);
    bookmark.textContent = on ? "★ Bookmarked" : "☆ Bookmark";
  };
  bookmark.addEventListener("click", async (event) => {
    event.preventDefault();
    try {
      const saved = await patch({ is_bookmarked: bookmark.dataset.bookmarked !== "true" });
      showBookmark(saved.is_bookmarked);
    } catch (error) {
      status.textContent = `bookmark not saved: ${error.message}`;
    }
  });

  document.getElementById("timeline").addEventListener("click", async (event) => {
    const link = event.target.closest("a[data-fragment]");
    if (!link) return;
    event.preventDefault();
    link.textContent = "loading…";
    const response = await fetch(link.dataset.fragment, { credentials: "same-origin" });
    // The fragment is rendered (and escaped) by the server, like the rest of the page.
    link.closest("p.load-more").outerHTML = await response.text();
  });

  const help = document.getElementById("shortcut-help");
  // Content search: mark the matching steps and their words, go to the first; n / N step through.
  const hitLinks = [...document.querySelectorAll("a.search-hit-link")];
  const wordsData = document.getElementById("search-words");
  const words = wordsData ? JSON.parse(wordsData.textContent) : [];
  const escapeRegex = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const finder = words.length ? new RegExp(words.map(escapeRegex).join("|"), "gi") : null;
  const markWords = (element) => {
    if (!finder) return;
    const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
    const nodes = [];
    while (walker.nextNode()) nodes.push(walker.currentNode);
    for (const node of nodes) {
      const text = node.nodeValue;
      finder.lastIndex = 0;
      if (!finder.test(text)) continue;
      const fragment = document.createDocumentFragment();
      let at = 0;
      finder.lastIndex = 0;
      for (const match of text.matchAll(finder)) {
        if (!match[0]) continue;
        fragment.append(text.slice(at, match.index));
        const mark = document.createElement("mark");
        mark.textContent = match[0];
        fragment.append(mark);
        at = match.index + match[0].length;
      }
      fragment.append(text.slice(at));
      node.replaceWith(fragment);
    }
  };
  const hitSteps = hitLinks
    .filter((link) => link.classList.contains("here"))
    .map((link) => document.getElementById(`step-${link.dataset.step}`))
    .filter(Boolean);
  for (const step of hitSteps) {
    step.classList.add("search-hit");
    markWords(step);
  }
  let currentHit = -1;
  const goToHit = (delta) => {
    if (!hitLinks.length) return;
    currentHit = (currentHit + delta + hitLinks.length) % hitLinks.length;
    const link = hitLinks[currentHit];
    const step = link.classList.contains("here") ? document.getElementById(`step-${link.dataset.step}`) : null;
    if (step) {
      step.scrollIntoView({ block: "start" });
      history.replaceState(null, "", `#step-${link.dataset.step}`);
    } else {
      window.location.href = link.href;
    }
    for (const other of hitLinks) other.classList.toggle("current", other === link);
  };
  if (hitSteps.length && !window.location.hash) {
    currentHit = hitLinks.findIndex((link) => link.classList.contains("here"));
    hitSteps[0].scrollIntoView({ block: "start" });
    hitLinks[currentHit].classList.add("current");
  }

  // Similar trajectories: asked of the API when opened (an exact search over the list's rows).
  const similar = document.getElementById("similar");
  const loadSimilar = async () => {
    if (similar.dataset.loaded) return;
    similar.dataset.loaded = "1";
    const body = document.getElementById("similar-body");
    try {
      const response = await fetch(similar.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`${response.status}`);
      const found = (await response.json()).results;
      body.replaceChildren();
      if (!found.length) {
        body.textContent = "No similar trajectory among these.";
        return;
      }
      const table = document.createElement("table");
      table.className = "similar-table";
      for (const row of found) {
        const line = table.insertRow();
        const link = document.createElement("a");
        link.href = row.url.replace("/api/trajectories/", similar.dataset.list) + window.location.search;
        link.textContent = row.trajectory_id;
        line.insertCell().append(link);
        line.insertCell().textContent = row.reward === null ? "—" : Number(row.reward).toFixed(3);
        line.insertCell().textContent = row.is_success === null ? "not judged" : row.is_success ? "success" : "failure";
        line.insertCell().textContent = `${Math.round(row.similarity * 100)}% alike`;
      }
      body.append(table);
    } catch (error) {
      body.textContent = `Could not load similar trajectories (${error.message}).`;
    }
  };
  if (similar) {
    similar.addEventListener("toggle", () => similar.open && loadSimilar());
    if (window.location.hash === "#similar") {
      similar.open = true;
      loadSimilar();
    }
  }

  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter" && event.target.closest("#annotation-form")) {
      event.preventDefault();
      form.requestSubmit();
      return;
    }
    if (event.target.closest("input, textarea, select") || event.metaKey || event.ctrlKey || event.altKey) return;
    const go = (id) => { const link = document.getElementById(id); if (link) window.location.href = link.href; };
    if (event.key === "j") go("next-link");
    else if (event.key === "k") go("previous-link");
    else if (event.key === "b") bookmark.click();
    else if (event.key === "?") help.hidden = !help.hidden;
    else if (event.key === "n") goToHit(1);
    else if (event.key === "N") goToHit(-1);
  });
});
