"""The wrk driver (Debian's ``wrk`` 4.x), used when it is installed: a Lua script POSTs the body, counts
responses that are not 200 or lack the expected text, and prints percentiles as one JSON line at the end."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

_MARKER = "WRKJSON "

_SCRIPT = """\
wrk.method = "POST"
local f = assert(io.open([==[{body_file}]==], "rb"))
wrk.body = f:read("*a")
f:close()
{headers}
local threads = {{}}
function setup(thread)
  table.insert(threads, thread)
end
bad = 0
sample = ""
function response(status, headers, body)
  if status ~= 200 or not string.find(body, [==[{expect}]==], 1, true) then
    bad = bad + 1
    if sample == "" then
      sample = "HTTP " .. status .. ": " .. (string.gsub(string.sub(body, 1, 200), "[\\r\\n]", " "))
    end
  end
end
function done(summary, latency, requests)
  local invalid, first = 0, ""
  for _, t in ipairs(threads) do
    invalid = invalid + t:get("bad")
    if first == "" then first = t:get("sample") end
  end
  local e = summary.errors
  io.write(string.format(
    '{marker}{{"requests":%d,"duration_us":%d,"transport_errors":%d,"invalid":%d,"p50_us":%d,"p99_us":%d}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, invalid,
    latency:percentile(50), latency:percentile(99)))
  io.write("WRKSAMPLE " .. first .. "\\n")
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def version() -> str:
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).split("Copyright")[0].strip()


def write_script(path: Path, body_file: Path, headers: dict[str, str], expect: str) -> Path:
    lines = [f"wrk.headers[ [==[{name}]==] ] = [==[{value}]==]" for name, value in headers.items()]
    path.write_text(_SCRIPT.format(body_file=body_file, headers="\n".join(lines), expect=expect, marker=_MARKER))
    return path


def command(url: str, script: Path, *, concurrency: int, duration: float, threads: int = 1) -> list[str]:
    seconds = max(1, math.ceil(duration))
    return [
        "wrk",
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        url,
    ]


def parse(stdout: str) -> dict[str, object]:
    """The JSON line the script printed, plus the first invalid response it saw (if any)."""
    result: dict[str, object] | None = None
    sample = ""
    for line in stdout.splitlines():
        if line.startswith(_MARKER):
            result = json.loads(line[len(_MARKER) :])
        elif line.startswith("WRKSAMPLE "):
            sample = line[len("WRKSAMPLE ") :]
    if result is None:
        raise RuntimeError(f"wrk printed no result:\n{stdout[-2000:]}")
    result["sample"] = sample
    return result
