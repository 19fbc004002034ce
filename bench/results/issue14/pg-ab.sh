#!/usr/bin/env bash
# PostgreSQL + Redis A/B, interleaved: the build before issue 14 (39cf7d5, `base`) against
# this session's head (`head`, one database) and head with every domain in its own database
# (`split`). /tmp/binbase and /tmp/binhead hold release builds of `mercato` and
# `mercato-loadgen` (cargo build --release -p mercato -p mercato-loadgen in a worktree of each
# commit; with a shared CARGO_TARGET_DIR, touch the sources before each build).
# BASE and HEAD override the two build directories.
set -u
PG=postgres://postgres@127.0.0.1
BASE=${BASE:-/tmp/binbase}
HEAD=${HEAD:-/tmp/binhead}
run() { # name bin port split?
  local name=$1 bin=$2 port=$3 split=$4
  local d=/tmp/pgab/$name-$RANDOM db=pgab_$RANDOM url
  mkdir -p $d
  if [ "$split" = yes ]; then
    for n in platform catalog inventory customers cart orders payments promotions flashsale webhooks; do
      psql $PG/postgres -qc "CREATE DATABASE ${db}_$n"; done
    url="$PG/${db}_{domain}"
  else
    psql $PG/postgres -qc "CREATE DATABASE $db"; url="$PG/$db"
  fi
  redis-server --port $((port + 1000)) --bind 127.0.0.1 --save "" --appendonly no > $d/redis.log 2>&1 &
  local rpid=$!
  env MERCATO_DATABASE_URL="$url" MERCATO_CACHE_REDIS_URL=redis://127.0.0.1:$((port + 1000))/0 \
    MERCATO_DATABASE_POOL_SIZE=16 MERCATO_DATA_DIR=$d/data MERCATO_LISTEN=127.0.0.1:$port MERCATO_SEED_PRODUCTS=10000 \
    MERCATO_ADMIN_EMAIL=admin@bench.local MERCATO_ADMIN_PASSWORD=bench-password-123 \
    MERCATO_AUTH_ARGON2_MEMORY_KIB=1024 $bin/mercato serve > $d/server.log 2>&1 &
  local pid=$!
  for i in $(seq 120); do curl -sf 127.0.0.1:$port/readyz >/dev/null && break; sleep 1; done
  until grep -q "search index rebuilt" $d/server.log; do sleep 1; done
  sleep 2
  for scenario in product-detail checkout; do
    local out=$($bin/mercato-loadgen $scenario --url http://127.0.0.1:$port -c 64 -t 1 --warmup 5s --duration 15s 2>&1 | grep -E "iterations|p99")
    echo "$name $scenario: $(echo $out | tr -s ' ')"
  done
  kill $pid; wait $pid 2>/dev/null; kill $rpid; wait $rpid 2>/dev/null
  for x in $(psql $PG/postgres -Atc "select datname from pg_database where datname like '$db%'"); do
    psql $PG/postgres -qc "DROP DATABASE $x WITH (FORCE)"; done
}
ceiling() { # bin: each build's own storage ceiling (its SQL layer is part of it)
  local db=pgab_ceiling_$RANDOM; psql $PG/postgres -qc "CREATE DATABASE $db"
  MERCATO_DATABASE_URL=$PG/$db MERCATO_DATA_DIR=/tmp/pgab/c-$RANDOM $1/mercato bench-storage --seconds 10 --clients 16 | tail -1
  psql $PG/postgres -qc "DROP DATABASE $db WITH (FORCE)"
}
rm -rf /tmp/pgab; mkdir -p /tmp/pgab
echo "ceiling base: $(ceiling $BASE)"; echo "ceiling head: $(ceiling $HEAD)"
for round in 1 2; do
  run base $BASE 18401 no
  run head $HEAD 18402 no
  run split $HEAD 18403 yes
done
echo "ceiling base: $(ceiling $BASE)"; echo "ceiling head: $(ceiling $HEAD)"
