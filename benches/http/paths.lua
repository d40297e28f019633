-- wrk script: requests spread over a list of paths (one per line in
-- $CLARITY_PATHS), with the bearer token in $CLARITY_TOKEN. With
-- $CLARITY_BODY set, every request is a POST of that JSON body.
local paths = {}
local token = os.getenv("CLARITY_TOKEN")
local body = os.getenv("CLARITY_BODY")

local file = assert(io.open(os.getenv("CLARITY_PATHS"), "r"))
for line in file:lines() do
  paths[#paths + 1] = line
end
file:close()

math.randomseed(os.time())

request = function()
  local path = paths[math.random(#paths)]
  local headers = { ["Authorization"] = "Bearer " .. token }
  if body ~= nil and body ~= "" then
    headers["Content-Type"] = "application/json"
    return wrk.format("POST", path, headers, body)
  end
  return wrk.format("GET", path, headers)
end

done = function(summary, latency, requests)
  io.write(string.format(
    "RESULT requests=%d errors_status=%d errors_connect=%d errors_read=%d errors_write=%d errors_timeout=%d p50_us=%d p99_us=%d p999_us=%d duration_us=%d\n",
    summary.requests, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), summary.duration))
end
