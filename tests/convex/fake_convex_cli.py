"""A stand-in for `convex deploy`: does what ``behavior.json`` beside it says and records
how it was called (argv, environment, cwd, stdin, the bundle it saw) in ``calls.jsonl``."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
behavior = json.loads((HERE / "behavior.json").read_text())
record = {
    "argv": sys.argv[1:],
    "env": dict(os.environ),
    "cwd": os.getcwd(),
    "stdin_tty": sys.stdin is not None and sys.stdin.isatty(),
    "stdin_data": sys.stdin.read() if sys.stdin is not None else "",
    "node_modules_link": os.path.islink("node_modules"),
    "files": sorted(str(p) for p in Path(".").rglob("*") if "node_modules" not in p.parts),
    "pid": os.getpid(),
}
mode = behavior.get("mode", "ok")
if mode == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    record["child_pid"] = child.pid
with open(HERE / "calls.jsonl", "a") as f:
    f.write(json.dumps(record) + "\n")
    f.flush()

key = os.environ.get("CONVEX_SELF_HOSTED_ADMIN_KEY") or os.environ.get("CONVEX_DEPLOY_KEY", "")
url = os.environ.get("CONVEX_SELF_HOSTED_URL", "")
print(f"Deploying code to deployment: {url}", file=sys.stderr)
if behavior.get("echo_key"):
    print(f"debug: adminKey={key} Authorization: Convex {key} raw {key}", file=sys.stderr)
time.sleep(behavior.get("sleep", 0))
if mode == "hang":
    time.sleep(600)
sys.stdout.write(behavior.get("output", ""))
sys.stdout.flush()
sys.exit(behavior.get("exit", 0))
