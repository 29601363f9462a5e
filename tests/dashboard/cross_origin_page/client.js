// Submits a hello_world job to the Runpack API named in the query string, follows it to
// its end, reads the admin stats, and writes what it saw into the page.
const query = new URLSearchParams(location.search);
const api = query.get("api");

const show = (id, value) => { document.getElementById(id).textContent = value; };
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function call(path, key, options = {}) {
  const response = await fetch(`${api}${path}`, {
    ...options,
    headers: { "Authorization": `Bearer ${key}`, "Content-Type": "application/json" },
  });
  const body = await response.json();
  if (!response.ok) throw new Error(`${response.status} ${body.error}`);
  return body;
}

async function run() {
  const submitted = await call("/api/jobs/submit", query.get("submit"), {
    method: "POST",
    body: JSON.stringify({
      job_type: "hello_world",
      input_params: { name: query.get("name"), processing_time: 0 },
    }),
  });
  show("job-id", submitted.job_id);
  let job = submitted;
  while (!["completed", "failed"].includes(job.status)) {
    await pause(200);
    job = await call(`/api/jobs/${submitted.job_id}`, query.get("submit"));
    show("status", job.status);
  }
  show("output", JSON.stringify(job.result?.output_data ?? job.error));
  const stats = await call("/api/admin/stats", query.get("admin"));
  show("jobs-total", stats.jobs.total);
}

run()
  .catch((error) => show("error", `${error.name}: ${error.message}`))
  .finally(() => show("done", "done"));
