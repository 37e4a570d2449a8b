# Sourced by the cpu_per_*.sh scripts: `start_chatd BIN [chatd flags...]` starts chatd on a
# fresh data directory without rate limits, stops it and removes the directory on exit,
# and sets `pid` (chatd's) and `TOKEN` (a new application's).
start_chatd() {
  local bin=$1; shift
  data=$(mktemp -d)
  "$bin" --data-dir "$data" --ip-rate 0 --token-rate 0 "$@" > "$data.log" 2>&1 &
  pid=$!
  trap 'kill $pid; wait $pid 2>/dev/null; rm -rf "$data" "$data.log"' EXIT
  for _ in $(seq 50); do curl -sf localhost:3000/health > /dev/null && break; sleep 0.1; done
  TOKEN=$(curl -sf -X POST 'localhost:3000/applications?name=bench' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  export TOKEN
}
