// Import job page: poll the job's status and show its progress; reload with the result when done.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("content-main");
  const set = (id, text) => { document.getElementById(id).textContent = text; };
  const poll = async () => {
    const response = await fetch(root.dataset.statusUrl, { credentials: "same-origin" });
    const job = await response.json();
    document.getElementById("job-progress").value = job.fraction;
    set("job-status", job.outcome);
    set("job-records", job.records);
    set("job-imported", job.imported);
    set("job-duplicates", job.duplicates);
    set("job-rejected", job.rejected);
    if (job.finished) window.location.reload();
    else window.setTimeout(poll, 500);
  };
  window.setTimeout(poll, 300);
});
