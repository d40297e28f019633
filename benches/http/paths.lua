-- wrk script: requests spread over a list of paths (one per line in
-- $CLARITY_PATHS), with the bearer token in $CLARITY_TOKEN. With
-- $CLARITY_BODY set, every request is a POST of that JSON body.
--
-- The paths are kept as one string of fixed-width lines, not as a table of
-- strings: the garbage collector marks a table's entries in one step, and
-- with a million paths that step paused wrk's event loop for tens of
-- milliseconds, which wrk then counted as the server's latency.
local token = os.getenv("CLARITY_TOKEN")
local body = os.getenv("CLARITY_BODY")

local file = assert(io.open(os.getenv("CLARITY_PATHS"), "r"))
local all = file:read("*a")
file:close()
local width = assert(all:find("\n", 1, true), "no paths")
assert(#all % width == 0, "paths must all have the same length")
local count = #all / width
for i = 1, count do
  assert(all:byte(i * width) == 10, "paths must all have the same length")
end

local headers = { ["Authorization"] = "Bearer " .. token }
local method = "GET"
if body ~= nil and body ~= "" then
  headers["Content-Type"] = "application/json"
  method = "POST"
else
  body = nil
end

math.randomseed(os.time())

request = function()
  local start = (math.random(count) - 1) * width
  return wrk.format(method, all:sub(start + 1, start + width - 1), headers, body)
end

done = function(summary, latency, requests)
  io.write(string.format(
    "RESULT requests=%d errors_status=%d errors_connect=%d errors_read=%d errors_write=%d errors_timeout=%d p50_us=%d p99_us=%d p999_us=%d duration_us=%d\n",
    summary.requests, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), summary.duration))
end
