// Forms that ask first or say they are working: `data-confirm` asks before submitting,
// `data-progress` shows the element it names while the answer is computed. (No inline handlers:
// the content security policy allows scripts from this site's files only.)
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    return;
  }
  const progress = form.dataset.progress && document.getElementById(form.dataset.progress);
  if (progress) progress.hidden = false;
});
