-- wrk script for benches/load.sh: every request is a POST of WRK_BODY as JSON,
-- with `Authorization: Bearer WRK_TOKEN` when WRK_TOKEN is set and not empty.
--
--   WRK_BODY='{"model":"m","messages":[...]}' WRK_TOKEN=gh_... \
--     wrk -s benches/wrk_post.lua --latency http://127.0.0.1:8080/v1/chat/completions

wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY")
    or '{"model":"m","messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"

local token = os.getenv("WRK_TOKEN")
if token ~= nil and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
end

-- WRK_IDEMPOTENCY=1: every request carries its own `Idempotency-Key`
-- (task creation). Keys are unique per run, per wrk thread and per request.
if os.getenv("WRK_IDEMPOTENCY") == "1" then
    local threads = 0
    function setup(thread)
        threads = threads + 1
        thread:set("tid", threads)
    end
    local run = tostring(os.time()) .. "-" .. tostring(math.floor(os.clock() * 1e6))
    local n = 0
    function request()
        n = n + 1
        wrk.headers["Idempotency-Key"] = run .. "-" .. tostring(tid) .. "-" .. tostring(n)
        return wrk.format()
    end
end
