-- The same request every time: method and body from BENCH_METHOD and BENCH_BODY
-- (set by http_bench.py), headers from wrk's -H flags. Set at load time, so wrk
-- builds the request once and sends it without calling Lua per request.

local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "report.lua")

wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.body = os.getenv("BENCH_BODY")
