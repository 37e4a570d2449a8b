#!/bin/bash
# CPU per message create, by thread, of a chatd binary on a fresh data directory:
#   crates/bench/scripts/cpu_per_create.sh target/release/chatd [chatd flags...]
# Needs wrk, curl and python3; uses ports 3000 and 8080. See BENCHMARKS.md.
set -euo pipefail
bin=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
data=$(mktemp -d)
"$bin" --data-dir "$data" --ip-rate 0 --token-rate 0 "$@" > "$data.log" 2>&1 &
pid=$!
trap 'kill $pid; wait $pid 2>/dev/null; rm -rf "$data" "$data.log"' EXIT
for _ in $(seq 50); do curl -sf localhost:3000/health > /dev/null && break; sleep 0.1; done
TOKEN=$(curl -sf -X POST 'localhost:3000/applications?name=bench' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
export TOKEN
for _ in 1 2 3 4; do curl -sf -X POST "localhost:8080/applications/$TOKEN/chats" > /dev/null; done
python3 "$here/cpu_per_request.py" $pid 10 -t1 -c64 -s "$here/post_message.lua" http://127.0.0.1:8080
