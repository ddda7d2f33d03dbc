#!/usr/bin/env bash
# Starts and stops the real servers that karch's tests and demo talk to: Apache Kafka (KRaft,
# one combined broker+controller), Redis and MinIO, all on 127.0.0.1 and non-default ports.
#
#   services.sh up     install what is missing, start what is not healthy, reuse what is
#   services.sh up kube   the same, and a Kubernetes control plane (etcd, kube-apiserver,
#                         kube-controller-manager) for the Kubernetes tests
#   services.sh down   stop only the servers this script started (by their PID files)
#   services.sh status one line per server
#   services.sh tools  build or install the tools the tests use beside the servers
#                      (promtool, DuckDB); make test runs it, make demo does not
#
# Downloads and builds go to $KARCHDEV_CACHE (default ~/.cache/karch) so that only a fresh machine
# pays for them; PID files, logs and data go to $KARCHDEV_STATE (default $KARCHDEV_CACHE/state).
set -euo pipefail

KAFKA_VERSION=4.3.1
LOG4J_VERSION=2.25.4
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
KUBE_VERSION=1.37.2 # keep in step with tests/kube/build.sh
PROMETHEUS_VERSION=v0.316.0 # promtool, for the alert rules' unit tests (tests/alerts)
DUCKDB_VERSION=1.5.5 # DuckDB and its httpfs extension from PyPI, for tests/audit; versions must match

: "${KARCHDEV_CACHE:=$HOME/.cache/karch}"
: "${KARCHDEV_STATE:=$KARCHDEV_CACHE/state}"
: "${KARCHDEV_KAFKA_PORT:=19092}"
: "${KARCHDEV_KAFKA_CONTROLLER_PORT:=19093}"
: "${KARCHDEV_REDIS_PORT:=16379}"
: "${KARCHDEV_S3_PORT:=19000}"
: "${KARCHDEV_S3_ACCESS_KEY:=karchtest}"
: "${KARCHDEV_S3_SECRET_KEY:=karchtest-secret}"
: "${KARCHDEV_S3_BUCKET:=karch-test}"
: "${KARCHDEV_ETCD_PORT:=12379}"
: "${KARCHDEV_KUBE_PORT:=16443}"
: "${KARCHDEV_KUBE_CM_PORT:=20257}"
: "${KARCHDEV_READY_TIMEOUT:=90}"
# Set both to give Kafka a second listener, on KARCHDEV_KAFKA_PROXIED_PORT, that advertises
# KARCHDEV_KAFKA_PROXY_PORT: clients that bootstrap there reach the broker only through
# whatever listens on the proxy port (the chaos tests' fault proxy). Empty: no such listener.
: "${KARCHDEV_KAFKA_PROXIED_PORT:=}"
: "${KARCHDEV_KAFKA_PROXY_PORT:=}"

here=$(cd "$(dirname "$0")" && pwd)

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ours NAME: true when NAME's PID file names a live process.
ours() {
  local pidfile="$KARCHDEV_STATE/$1/pid"
  [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# wait_ready NAME CHECK...: polls CHECK until it succeeds or the timeout passes, then fails
# naming the server and its log, so a broken start is diagnosed from the CI output alone.
wait_ready() {
  local name=$1; shift
  local deadline=$((SECONDS + KARCHDEV_READY_TIMEOUT))
  until "$@"; do
    if ! ours "$name"; then
      tail -n 30 "$KARCHDEV_STATE/$name/log" >&2 || true
      die "$name exited during start-up; its log is $KARCHDEV_STATE/$name/log"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$KARCHDEV_STATE/$name/log" >&2 || true
      die "$name not ready after ${KARCHDEV_READY_TIMEOUT}s; its log is $KARCHDEV_STATE/$name/log"
    fi
    sleep 0.2
  done
}

# ensure_cmd CMD PACKAGE: installs the Debian package that provides CMD when CMD is missing.
apt_updated=
ensure_cmd() {
  command -v "$1" >/dev/null && return
  log "installing $2 (Debian package) for $1"
  if [[ -z $apt_updated ]]; then apt-get update -qq >&2 || die "apt-get update failed; as root: apt-get install $2"; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >&2 || die "could not install $2; as root: apt-get install $2"
}

# start NAME CMD...: runs CMD detached, with its output in NAME's log and its PID in NAME's
# PID file.
start() {
  local name=$1; shift
  mkdir -p "$KARCHDEV_STATE/$name"
  log "starting $name (log: $KARCHDEV_STATE/$name/log)"
  setsid "$@" >"$KARCHDEV_STATE/$name/log" 2>&1 </dev/null &
  echo $! >"$KARCHDEV_STATE/$name/pid"
}

# --- Kafka --------------------------------------------------------------------------------

kafka_libs() { echo "$KARCHDEV_CACHE/kafka-$KAFKA_VERSION/libs"; }

install_kafka() {
  local libs; libs=$(kafka_libs)
  [[ -f $libs/.complete ]] && return
  ensure_cmd java openjdk-17-jre-headless
  ensure_cmd mvn maven
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $libs"
  mkdir -p "$libs"
  mvn -q -B -f "$here/kafka-pom.xml" -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs" >&2
  touch "$libs/.complete"
}

kafka_ready() { port_open "$KARCHDEV_KAFKA_PORT" && grep -q 'Kafka Server started' "$KARCHDEV_STATE/kafka/log"; }

up_kafka() {
  if ours kafka && port_open "$KARCHDEV_KAFKA_PORT"; then log "kafka: reusing 127.0.0.1:$KARCHDEV_KAFKA_PORT"; return; fi
  port_open "$KARCHDEV_KAFKA_PORT" && die "port $KARCHDEV_KAFKA_PORT is taken by a process this script did not start"
  install_kafka
  local dir="$KARCHDEV_STATE/kafka"
  mkdir -p "$dir/data"
  sed -e "s#@PORT@#$KARCHDEV_KAFKA_PORT#g" -e "s#@CPORT@#$KARCHDEV_KAFKA_CONTROLLER_PORT#g" \
    -e "s#@DATA@#$dir/data#g" "$here/kafka.properties" >"$dir/server.properties"
  if [[ -n $KARCHDEV_KAFKA_PROXIED_PORT ]]; then
    sed -i -e "s#^listeners=.*#&,PROXIED://127.0.0.1:$KARCHDEV_KAFKA_PROXIED_PORT#" \
      -e "s#^advertised.listeners=.*#&,PROXIED://127.0.0.1:$KARCHDEV_KAFKA_PROXY_PORT#" \
      -e "s#^listener.security.protocol.map=.*#&,PROXIED:PLAINTEXT#" "$dir/server.properties"
  fi
  local cp; cp="$(kafka_libs)/*"
  if [[ ! -f $dir/data/meta.properties ]]; then
    java -cp "$cp" kafka.tools.StorageTool format -t "$(java -cp "$cp" kafka.tools.StorageTool random-uuid)" \
      -c "$dir/server.properties" >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; die "kafka storage format failed"; }
  fi
  start kafka java -Xms256m -Xmx1g -XX:+UseG1GC -Dlog4j2.configurationFile="$here/kafka-log4j2.properties" \
    -cp "$cp" kafka.Kafka "$dir/server.properties"
  wait_ready kafka kafka_ready
}

# --- Redis --------------------------------------------------------------------------------

redis_ready() { redis-cli -p "$KARCHDEV_REDIS_PORT" ping >/dev/null 2>&1; }

up_redis() {
  if ours redis && redis_ready; then log "redis: reusing 127.0.0.1:$KARCHDEV_REDIS_PORT"; return; fi
  port_open "$KARCHDEV_REDIS_PORT" && die "port $KARCHDEV_REDIS_PORT is taken by a process this script did not start"
  ensure_cmd redis-server redis-server
  start redis redis-server --bind 127.0.0.1 --port "$KARCHDEV_REDIS_PORT" --save '' --appendonly no \
    --protected-mode yes --dir "$KARCHDEV_STATE/redis"
  wait_ready redis redis_ready
}

# --- MinIO --------------------------------------------------------------------------------

minio_bin() { echo "$KARCHDEV_CACHE/bin/minio-$MINIO_VERSION"; }

install_minio() {
  [[ -x $(minio_bin) ]] && return
  log "building MinIO $MINIO_VERSION from the Go module proxy (about 5 minutes on 2 cores, once)"
  local gobin; gobin=$(mktemp -d)
  GOBIN=$gobin GOFLAGS=-buildvcs=false go install "github.com/minio/minio@$MINIO_VERSION" >&2
  mkdir -p "$KARCHDEV_CACHE/bin"
  mv "$gobin/minio" "$(minio_bin)"
  rmdir "$gobin"
}

s3_url() { echo "http://127.0.0.1:$KARCHDEV_S3_PORT"; }
minio_ready() { curl -fs -o /dev/null "$(s3_url)/minio/health/live"; }

# make_bucket signs a CreateBucket with curl's SigV4 support; 409 means it exists already.
make_bucket() {
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$KARCHDEV_S3_ACCESS_KEY:$KARCHDEV_S3_SECRET_KEY" "$(s3_url)/$KARCHDEV_S3_BUCKET")
  [[ $code == 200 || $code == 409 ]] || die "creating bucket $KARCHDEV_S3_BUCKET answered HTTP $code"
}

up_minio() {
  if ours minio && minio_ready; then log "minio: reusing $(s3_url)"; make_bucket; return; fi
  port_open "$KARCHDEV_S3_PORT" && die "port $KARCHDEV_S3_PORT is taken by a process this script did not start"
  install_minio
  mkdir -p "$KARCHDEV_STATE/minio/data"
  MINIO_ROOT_USER=$KARCHDEV_S3_ACCESS_KEY MINIO_ROOT_PASSWORD=$KARCHDEV_S3_SECRET_KEY \
    MINIO_BROWSER=off MINIO_UPDATE=off start minio "$(minio_bin)" server --quiet \
    --address "127.0.0.1:$KARCHDEV_S3_PORT" --console-address "127.0.0.1:$((KARCHDEV_S3_PORT + 1))" \
    "$KARCHDEV_STATE/minio/data"
  wait_ready minio minio_ready
  make_bucket
}

# --- promtool ------------------------------------------------------------------------------
# Not a server: the Prometheus tool that runs the unit tests of deploy/'s alert rules. Built
# under a versioned name; $KARCHDEV_CACHE/bin/promtool (KARCH_TEST_PROMTOOL in the Makefile)
# points at the version above.

promtool_bin() { echo "$KARCHDEV_CACHE/bin/promtool-$PROMETHEUS_VERSION"; }

install_promtool() {
  if [[ ! -x $(promtool_bin) ]]; then
    log "building promtool $PROMETHEUS_VERSION from the Go module proxy (about 6 minutes on 2 cores, once)"
    local gobin; gobin=$(mktemp -d)
    GOBIN=$gobin GOFLAGS="-mod=mod -buildvcs=false" go install "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" >&2
    mkdir -p "$KARCHDEV_CACHE/bin"
    mv "$gobin/promtool" "$(promtool_bin)"
    rmdir "$gobin"
  fi
  ln -sfn "$(basename "$(promtool_bin)")" "$KARCHDEV_CACHE/bin/promtool"
  log "promtool: $KARCHDEV_CACHE/bin/promtool ($PROMETHEUS_VERSION)"
}

# --- DuckDB -------------------------------------------------------------------------------
# Not a server: DuckDB in a virtualenv of its own, with the httpfs extension from its PyPI
# package (no extension download at run time), so tests read the archive as users will.

install_duckdb() {
  local venv=$KARCHDEV_CACHE/duckdb-$DUCKDB_VERSION
  if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import duckdb, duckdb_extension_httpfs' 2>/dev/null; then
    if ! python3 -m venv --help >/dev/null 2>&1; then
      ensure_cmd python3 python3
      apt-get install -y -qq python3-venv >&2 || die "could not install python3-venv; as root: apt-get install python3-venv"
    fi
    log "installing DuckDB $DUCKDB_VERSION and its httpfs extension from PyPI into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "duckdb==$DUCKDB_VERSION" "duckdb-extension-httpfs==$DUCKDB_VERSION" >&2
  fi
  ln -sfn "$(basename "$venv")" "$KARCHDEV_CACHE/duckdb" # KARCH_TEST_DUCKDB_PYTHON in the Makefile
  log "duckdb: $KARCHDEV_CACHE/duckdb/bin/python ($DUCKDB_VERSION)"
}

# --- Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager ----------------
# Started only by `services.sh up kube` (make test), since its first build takes minutes and
# the demo does not need it. The three are one unit: when any is unhealthy, all three restart
# on a fresh etcd, so no test ever sees a half-remembered cluster.

kube_dir() { echo "$KARCHDEV_STATE/kube"; }
kube_bin() { echo "$KARCHDEV_CACHE/kube-$KUBE_VERSION/$1"; }
kube_url() { echo "https://127.0.0.1:$KARCHDEV_KUBE_PORT"; }
etcd_ready() { curl -fs "http://127.0.0.1:$KARCHDEV_ETCD_PORT/health" | grep -q '"health":"true"'; }
apiserver_ready() { curl -fsk -H "Authorization: Bearer $(cat "$(kube_dir)/admin.token")" "$(kube_url)/readyz" >/dev/null; }
controller_ready() { curl -fsk "https://127.0.0.1:$KARCHDEV_KUBE_CM_PORT/healthz" >/dev/null; }
kube_healthy() { ours etcd && ours kube-apiserver && ours kube-controller-manager && etcd_ready && apiserver_ready && controller_ready; }

# kube_credentials writes the service-account signing key, the admin token and a kubeconfig
# holding it, once per state directory.
kube_credentials() {
  local dir; dir=$(kube_dir)
  mkdir -p "$dir"
  [[ -f $dir/sa.key ]] || openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
  [[ -f $dir/admin.token ]] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/admin.token"
  echo "$(cat "$dir/admin.token"),karch-admin,karch-admin,system:masters" >"$dir/tokens.csv"
  cat >"$dir/admin.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$(kube_url)", insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: "$(cat "$dir/admin.token")"}}]
contexts: [{name: local, context: {cluster: local, user: admin}}]
current-context: local
KC
}

up_kube() {
  if kube_healthy; then log "kube: reusing $(kube_url) (kubeconfig: $(kube_dir)/admin.kubeconfig)"; return; fi
  for s in kube-controller-manager kube-apiserver etcd; do down_one "$s"; done
  for p in "$KARCHDEV_ETCD_PORT" "$KARCHDEV_KUBE_PORT" "$KARCHDEV_KUBE_CM_PORT"; do
    port_open "$p" && die "port $p is taken by a process this script did not start"
  done
  ensure_cmd etcd etcd-server
  ensure_cmd openssl openssl
  ensure_cmd kubectl kubectl # on these machines from the Google Cloud SDK apt source
  "$here/../kube/build.sh"
  kube_credentials
  local dir; dir=$(kube_dir)
  rm -rf "$KARCHDEV_STATE/etcd/data"
  mkdir -p "$KARCHDEV_STATE/etcd"
  start etcd etcd --name karch --data-dir "$KARCHDEV_STATE/etcd/data" \
    --listen-client-urls "http://127.0.0.1:$KARCHDEV_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$KARCHDEV_ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((KARCHDEV_ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((KARCHDEV_ETCD_PORT + 1))" \
    --initial-cluster "karch=http://127.0.0.1:$((KARCHDEV_ETCD_PORT + 1))"
  wait_ready etcd etcd_ready
  start kube-apiserver "$(kube_bin kube-apiserver)" --etcd-servers "http://127.0.0.1:$KARCHDEV_ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$KARCHDEV_KUBE_PORT" \
    --endpoint-reconciler-type none --cert-dir "$dir/certs" --token-auth-file "$dir/tokens.csv" \
    --authorization-mode RBAC --service-cluster-ip-range 10.96.0.0/16 \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$dir/sa.key" \
    --service-account-signing-key-file "$dir/sa.key"
  wait_ready kube-apiserver apiserver_ready
  start kube-controller-manager "$(kube_bin kube-controller-manager)" --kubeconfig "$dir/admin.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KARCHDEV_KUBE_CM_PORT" --cert-dir "$dir/cm-certs" --leader-elect=false \
    --controllers job,cronjob,ttl-after-finished,garbagecollector,serviceaccount,serviceaccount-token,namespace \
    --service-account-private-key-file "$dir/sa.key" --concurrent-job-syncs 2
  wait_ready kube-controller-manager controller_ready
  log "kube: ready at $(kube_url) (kubeconfig: $dir/admin.kubeconfig)"
}

# --- commands -----------------------------------------------------------------------------

down_one() {
  local name=$1 pidfile="$KARCHDEV_STATE/$1/pid" pid
  [[ -f $pidfile ]] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

status_one() {
  if ours "$1"; then echo "$1: running, pid $(cat "$KARCHDEV_STATE/$1/pid")"; else echo "$1: not running"; fi
}

case "${1:-}" in
  up)
    mkdir -p "$KARCHDEV_STATE"
    ensure_cmd curl curl
    ensure_cmd zstd zstd # the archive must stay readable by Debian's zstd; a test checks it
    up_redis
    up_kafka
    up_minio
    if [[ ${2:-} == kube ]]; then up_kube; fi
    ;;
  down) for s in kube-controller-manager kube-apiserver etcd minio kafka redis; do down_one "$s"; done ;;
  status) for s in kafka redis minio etcd kube-apiserver kube-controller-manager; do status_one "$s"; done ;;
  tools) install_promtool; install_duckdb ;;
  *) die "usage: $0 up [kube]|down|status|tools" ;;
esac
