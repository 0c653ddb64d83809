-- wrk script for a plain GET (Odoo's ceiling): only prints wrk's figures as one JSON line.
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
