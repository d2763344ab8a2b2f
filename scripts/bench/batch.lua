-- wrk script: POST /transactions/batch with BATCH_SIZE valid transactions (default 100), each
-- with a fresh id. Reports transactions/s accepted (requests/s x batch size) beside requests/s.
local counter = 0
local thread_tag = tostring(math.random(1, 1e9))
local key = os.getenv("API_KEY") or "dev-key-for-the-demo-shop"
local batch_size = tonumber(os.getenv("BATCH_SIZE") or "100")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key

request = function()
  local items = {}
  for i = 1, batch_size do
    counter = counter + 1
    items[i] = string.format(
      '{"transaction_id":"bench-%s-%d","amount":"%d.99","timestamp":"2024-08-09T12:34:56Z","payment_method":"card"}',
      thread_tag, counter, counter % 1500)
  end
  local body = '{"transactions":[' .. table.concat(items, ",") .. ']}'
  return wrk.format(nil, "/transactions/batch", nil, body)
end

done = function(summary, latency, requests)
  local rps = summary.requests / (summary.duration / 1e6)
  io.write(string.format("RESULT requests_per_sec=%.0f transactions_per_sec=%.0f p50_ms=%.2f p99_ms=%.2f non_2xx=%d socket_errors=%d\n",
    rps, rps * batch_size,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
