#!/bin/bash
# CPU per message create, by thread, of a chatd binary on a fresh data directory:
#   crates/bench/scripts/cpu_per_create.sh target/release/chatd [chatd flags...]
# Needs wrk, curl and python3; uses ports 3000 and 8080. See BENCHMARKS.md.
set -euo pipefail
bin=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
. "$here/start_chatd.sh"
start_chatd "$bin" "$@"
for _ in 1 2 3 4; do curl -sf -X POST "localhost:8080/applications/$TOKEN/chats" > /dev/null; done
python3 "$here/cpu_per_request.py" $pid 10 -t1 -c64 -s "$here/post_message.lua" http://127.0.0.1:8080
