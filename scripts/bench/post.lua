-- wrk script: POST a valid transaction with a fresh id per request, as shops would.
local counter = 0
local thread_tag = tostring(math.random(1, 1e9))
local key = os.getenv("API_KEY") or "dev-key-for-the-demo-shop"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key

request = function()
  counter = counter + 1
  local body = string.format(
    '{"transaction_id":"bench-%s-%d","amount":"%d.99","timestamp":"2024-08-09T12:34:56Z","payment_method":"card"}',
    thread_tag, counter, counter % 1500)
  return wrk.format(nil, "/transactions", nil, body)
end

done = function(summary, latency, requests)
  local non_2xx = summary.errors.status
  io.write(string.format("RESULT requests_per_sec=%.0f p50_ms=%.2f p99_ms=%.2f non_2xx=%d socket_errors=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    non_2xx, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
