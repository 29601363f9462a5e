-- POST to the URL's path (/api/jobs/submit) with parameters never seen before in every request:
-- {"n": <per-thread counter>, "name": "<run prefix>-<thread id>"}. The run prefix is
-- wrk's first script argument (http_bench.py passes a fresh random one per wrk run);
-- without it a random number stands in. Headers come from wrk's -H flags.

local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "report.lua")

local next_thread_id = 0

function setup(thread)
   next_thread_id = next_thread_id + 1
   thread:set("thread_id", next_thread_id)
end

local counter = 0
local name

function init(args)
   math.randomseed(os.time() + (thread_id or 0))
   local prefix = args[1] or string.format("%08x", math.random(0, 0x7fffffff))
   name = string.format("%s-%d", prefix, thread_id or 0)
end

function request()
   counter = counter + 1
   local body = string.format(
      '{"job_type":"noop","input_params":{"n":%d,"name":"%s"}}', counter, name)
   return wrk.format("POST", wrk.path, nil, body)
end
