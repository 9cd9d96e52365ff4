-- wrk script: heartbeats round-robin over the peers `loadgen --scenarios register` created
-- (bench-000000 .. bench-009999). Usage:
--   wrk -t1 -c32 -d10s --latency -s discovery/benches/heartbeat.lua http://127.0.0.1:PORT
local n = 10000
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = (i + 1) % n
  return wrk.format(nil, "/heartbeat", nil,
    string.format('{"cell_id":"bench-%06d","consciousness_level":0.5}', i))
end
