#!/bin/bash
# CPU per read, by thread, of a chatd binary on a fresh data directory, for GET of one
# message ("message") or of the default list page of a chat holding 101 messages ("page"):
#   crates/bench/scripts/cpu_per_read.sh target/release/chatd message|page [chatd flags...]
# Needs wrk, curl and python3; uses port 3000. See BENCHMARKS.md.
set -euo pipefail
bin=$1; what=$2; shift 2
case $what in
  message) path=messages/1 ;;
  page) path=messages ;;
  *) echo "the second argument is message or page, not $what" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
. "$here/start_chatd.sh"
start_chatd "$bin" "$@"
curl -sf -X POST "localhost:3000/applications/$TOKEN/chats" > /dev/null
for i in $(seq 101); do
  curl -sf -X POST -H 'Content-Type: application/json' -d "{\"body\":\"hello there $i\"}" \
    "localhost:3000/applications/$TOKEN/chats/1/messages" > /dev/null
done
python3 "$here/cpu_per_request.py" $pid 8 -t1 -c64 "http://127.0.0.1:3000/applications/$TOKEN/chats/1/$path"
