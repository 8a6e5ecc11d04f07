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
    if (!response.ok) throw new Error(`${response.status}: ${await response.text()}`);
    return response.json();
  };

  const form = document.getElementById("annotation-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = (name) => form.elements[name].value.trim();
    const success = value("is_success");
    const body = {
      is_success: success === "" ? null : success === "true",
      category: value("category") || null,
      root_cause: value("root_cause") || null,
      notes: value("notes") || null,
      tags: value("tags").split(",").map((tag) => tag.trim()).filter(Boolean),
    };
    status.textContent = "saving…";
    try {
      const saved = await patch(body);
      status.textContent = `saved ${new Date(saved.updated_at).toLocaleTimeString()}`;
    } catch (error) {
      status.textContent = `not saved: ${error.message}`;
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
  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, textarea, select") || event.metaKey || event.ctrlKey || event.altKey) return;
    const go = (id) => { const link = document.getElementById(id); if (link) window.location.href = link.href; };
    if (event.key === "j") go("next-link");
    else if (event.key === "k") go("previous-link");
    else if (event.key === "b") bookmark.click();
    else if (event.key === "?") help.hidden = !help.hidden;
  });
});
