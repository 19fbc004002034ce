#!/usr/bin/env bash
# Checkout A/B: the single-transaction build (39cf7d5) against the saga build, embedded, interleaved.
# /tmp/binbase and /tmp/binhead hold `mercato` and `mercato-loadgen` release builds of each
# (cargo build --release -p mercato -p mercato-loadgen in a worktree of each commit; with a shared
# CARGO_TARGET_DIR, touch the sources before the second build or cargo may reuse the first).
# Run 2 ran the same functions with two rounds of base and one-database, then one split round.
# BASE and HEAD override the two build directories.
set -u
BASE=${BASE:-/tmp/binbase}
HEAD=${HEAD:-/tmp/binhead}
run() { # name bin port extra-env...
  local name=$1 bin=$2 port=$3; shift 3
  local d=/tmp/ab/$name-$RANDOM; mkdir -p $d
  env "$@" MERCATO_DATA_DIR=$d/data MERCATO_LISTEN=127.0.0.1:$port MERCATO_SEED_PRODUCTS=10000 \
    MERCATO_ADMIN_EMAIL=admin@bench.local MERCATO_ADMIN_PASSWORD=bench-password-123 \
    MERCATO_AUTH_ARGON2_MEMORY_KIB=1024 $bin/mercato serve > $d/server.log 2>&1 &
  local pid=$!
  for i in $(seq 120); do curl -sf 127.0.0.1:$port/readyz >/dev/null && break; sleep 1; done
  until grep -q "search index rebuilt" $d/server.log; do sleep 1; done
  sleep 2
  local out=$($bin/mercato-loadgen checkout --url http://127.0.0.1:$port -c 64 -t 1 --warmup 3s --duration 15s 2>&1 | grep -E "iterations|p99")
  echo "$name: $(echo $out | tr -s ' ')"
  kill $pid; wait $pid 2>/dev/null
}
ceiling() { MERCATO_DATA_DIR=/tmp/ab/ceiling-$RANDOM $HEAD/mercato bench-storage --seconds 10 | tail -1; }
rm -rf /tmp/ab; mkdir -p /tmp/ab
echo "ceiling: $(ceiling)"
for round in 1 2; do
  run base $BASE 18301
  run saga-one-db $HEAD 18302
  run saga-split $HEAD 18303 MERCATO_DATABASE_URL="sqlite:/tmp/ab/split-$round-$RANDOM/{domain}.db"
done
echo "ceiling: $(ceiling)"
