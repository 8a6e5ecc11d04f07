// List page: select-all on the page and a selection counter. Reading works without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const toggle = document.getElementById("action-toggle");
  const boxes = () => Array.from(document.querySelectorAll("input.action-select"));
  const counter = document.getElementById("selection-counter");
  const allMatching = document.getElementById("select-all-matching");
  const update = () => {
    if (!counter) return;
    const chosen = boxes().filter((box) => box.checked).length;
    counter.textContent = allMatching && allMatching.checked
      ? `all ${counter.dataset.count} matching selected`
      : `${chosen} of ${boxes().length} selected`;
  };
  if (toggle) {
    toggle.addEventListener("change", () => { boxes().forEach((box) => { box.checked = toggle.checked; }); update(); });
  }
  boxes().forEach((box) => box.addEventListener("change", update));
  if (allMatching) allMatching.addEventListener("change", update);
  update();

});
