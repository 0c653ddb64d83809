-- wrk script: POST pre-signed webhook bodies, each once, and log when each was sent.
--   wrk -t T -c C -d D -s bench/wrk_post.lua http://127.0.0.1:PORT -- BODIES LOG_PREFIX THREADS PATH
-- BODIES has one request a line: "<X-Hub-Signature-256>\t<label>\t<body>". Thread i takes lines
-- i, i+T, i+2T... and writes "<line number> <unix time of sending>" to LOG_PREFIX<i>.log, so the
-- benchmark can match each message's commit time to its sending time. Bodies are reused from the
-- start when a thread runs out (redeliveries then; the benchmark counts them).
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now()
    ffi.C.clock_gettime(0, clock) -- CLOCK_REALTIME, as Python's time.time()
    return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end

local next_tid = 0
function setup(thread)
    thread:set("tid", next_tid)
    next_tid = next_tid + 1
end

local signatures, lines, bodies = {}, {}, {}
local position, count, log, path = 1, 0, nil, "/"

function init(args)
    local threads = tonumber(args[3])
    path = args[4]
    local number = 0
    for line in io.lines(args[1]) do
        if number % threads == tid then
            local signature, _, body = line:match("^([^\t]+)\t([^\t]*)\t(.*)$")
            count = count + 1
            signatures[count], lines[count], bodies[count] = signature, number, body
        end
        number = number + 1
    end
    log = io.open(args[2] .. tid .. ".log", "w")
    log:setvbuf("line")
end

function request()
    if position > count then position = 1 end
    local i = position
    position = position + 1
    log:write(string.format("%d %.6f\n", lines[i], now()))
    return wrk.format("POST", path, {
        ["Content-Type"] = "application/json",
        ["User-Agent"] = "facebookexternalua",
        ["X-Hub-Signature-256"] = signatures[i],
    }, bodies[i])
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'WRK-JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
        '"write_errors":%d,"status_errors":%d,"timeouts":%d,"lat_p50_us":%d,"lat_p90_us":%d,' ..
        '"lat_p99_us":%d,"lat_p999_us":%d,"lat_max_us":%d,"lat_mean_us":%.1f}\n',
        summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
        e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9), latency.max, latency.mean))
end
