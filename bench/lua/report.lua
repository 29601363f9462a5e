-- Shared by the bench scripts: print wrk's totals as one JSON line for http_bench.py.
-- Latencies are microseconds; "status" counts responses with an HTTP status >= 400
-- (wrk's own "Non-2xx or 3xx responses" counter, which in fact starts at 400).

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
      '"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      e.status, e.connect, e.read, e.write, e.timeout))
end
