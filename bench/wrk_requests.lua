-- wrk script for bench_ingest.py: each thread sends its own pre-signed, distinct bodies.
-- Usage: wrk ... -s bench/wrk_requests.lua URL -- DIR   (DIR/requests-<thread>.txt,
-- lines "timestamp TAB signature TAB body", written by harness.write_wrk_requests)
-- Prints one line "BENCH {json}" with the counts bench_ingest.py reads.

local threads = {}
local count = 0

function setup(thread)
  count = count + 1
  thread:set("id", count)
  table.insert(threads, thread)
end

function init(args)
  local path = args[1] .. "/requests-" .. id .. ".txt"
  reqs = {}
  for line in io.lines(path) do
    local ts, sig, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    reqs[#reqs + 1] = wrk.format("POST", nil, {
      ["Content-Type"] = "application/json; charset=utf-8",
      ["x-zm-request-timestamp"] = ts,
      ["x-zm-signature"] = sig,
    }, body)
  end
  if #reqs == 0 then
    error("no requests in " .. path)
  end
  i = 0
  ok = 0
  duplicate = 0
  failed = 0
  wrapped = 0
end

function request()
  i = i + 1
  if i > #reqs then
    -- Out of distinct bodies: the rest would measure dedupe, not ingest. Reported.
    i = 1
    wrapped = wrapped + 1
  end
  return reqs[i]
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
    if body and body:find("duplicate", 1, true) then
      duplicate = duplicate + 1
    end
  else
    failed = failed + 1
  end
end

function done(summary, latency, requests)
  local t = { ok = 0, duplicate = 0, failed = 0, wrapped = 0 }
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do
      t[k] = t[k] + (thread:get(k) or 0)
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "ok": %d, "duplicate": %d, "failed": %d, ' ..
    '"wrapped": %d, "socket_errors": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, t.ok, t.duplicate, t.failed, t.wrapped,
    e.connect + e.read + e.write + e.timeout, latency:percentile(99)))
end
