#!/usr/bin/env bash
# Write jobs per checkout flow: `write-jobs.sh NAME BUILD_DIR PORT` starts BUILD_DIR/mercato on a fresh
# embedded data dir, runs a 10 s checkout load, and diffs /metrics: db_commit_group_size_sum is
# the write jobs, the POST /api/v1/orders 201 count the orders placed.
# name bindir port [extra env...]: a 10 s checkout run, then write jobs per order from /metrics
name=$1 bin=$2 port=$3; shift 3
d=/tmp/cnt/$name-$RANDOM; mkdir -p $d
env "$@" MERCATO_DATA_DIR=$d/data MERCATO_LISTEN=127.0.0.1:$port MERCATO_SEED_PRODUCTS=10000 \
  MERCATO_ADMIN_EMAIL=admin@bench.local MERCATO_ADMIN_PASSWORD=bench-password-123 \
  MERCATO_AUTH_ARGON2_MEMORY_KIB=1024 $bin/mercato serve > $d/server.log 2>&1 &
pid=$!
for i in $(seq 120); do curl -sf 127.0.0.1:$port/readyz >/dev/null && break; sleep 1; done
until grep -q "search index rebuilt" $d/server.log; do sleep 1; done
sleep 2
curl -s 127.0.0.1:$port/metrics > $d/before.txt
$bin/mercato-loadgen checkout --url http://127.0.0.1:$port -c 64 -t 1 --warmup 1s --duration 10s 2>&1 | grep -E "iterations" | tr -s ' '
curl -s 127.0.0.1:$port/metrics > $d/after.txt
kill $pid; wait $pid 2>/dev/null
python3 - $d <<'PY'
import sys,re
d=sys.argv[1]
def load(f):
    m={}
    for l in open(f):
        if l.startswith('#') or not l.strip(): continue
        k,v=l.rsplit(' ',1)
        try: m[k]=float(v)
        except: pass
    return m
a,b=load(d+'/before.txt'),load(d+'/after.txt')
def delta(prefix):
    return sum(b[k]-a.get(k,0) for k in b if k.startswith(prefix))
jobs=delta('db_commit_group_size_sum')
orders=sum(b[k]-a.get(k,0) for k in b if k.startswith('http_requests_total') and 'route="/api/v1/orders"' in k and 'POST' in k and 'status="201"' in k)
print(f"write jobs {jobs:.0f}, orders {orders:.0f} -> {jobs/max(orders,1):.2f} per order")
PY
