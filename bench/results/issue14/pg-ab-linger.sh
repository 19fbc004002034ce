#!/usr/bin/env bash
# PostgreSQL + Redis checkout A/B, interleaved: 39cf7d5 (base, one transaction), acf2651 (the saga
# with the relay writing twice per step: the `head` of pg-ab-run1.txt) and the relay writing once
# per step and lingering 10 ms after small steps (`linger`). Binaries as in pg-ab.sh.
set -u
PG=postgres://postgres@127.0.0.1
run_checkout() { # name bin port
  local name=$1 bin=$2 port=$3 d=/tmp/pgab/$1-$RANDOM db=pgab_$RANDOM
  mkdir -p $d; psql $PG/postgres -qc "CREATE DATABASE $db"
  redis-server --port $((port + 1000)) --bind 127.0.0.1 --save "" --appendonly no > $d/redis.log 2>&1 &
  local rpid=$!
  env MERCATO_DATABASE_URL="$PG/$db" MERCATO_CACHE_REDIS_URL=redis://127.0.0.1:$((port + 1000))/0 \
    MERCATO_DATABASE_POOL_SIZE=16 MERCATO_DATA_DIR=$d/data MERCATO_LISTEN=127.0.0.1:$port MERCATO_SEED_PRODUCTS=2000 \
    MERCATO_ADMIN_EMAIL=admin@bench.local MERCATO_ADMIN_PASSWORD=bench-password-123 \
    MERCATO_AUTH_ARGON2_MEMORY_KIB=1024 $bin/mercato serve > $d/server.log 2>&1 &
  local pid=$!
  for i in $(seq 120); do curl -sf 127.0.0.1:$port/readyz >/dev/null && break; sleep 1; done
  until grep -q "search index rebuilt" $d/server.log; do sleep 1; done
  sleep 2
  local out=$($bin/mercato-loadgen checkout --url http://127.0.0.1:$port -c 64 -t 1 --warmup 5s --duration 15s 2>&1 | grep -E "iterations|p99")
  echo "$name checkout: $(echo $out | tr -s ' ')"
  kill $pid; wait $pid 2>/dev/null; kill $rpid; wait $rpid 2>/dev/null
  psql $PG/postgres -qc "DROP DATABASE $db WITH (FORCE)"
}
mkdir -p /tmp/pgab
for round in 1 2; do
  run_checkout base /tmp/binbase 18411
  run_checkout acf2651 /tmp/binhead 18412
  run_checkout linger /tmp/binlinger 18413
done
