#!/usr/bin/env bash
# Starts and stops the real servers that karch's tests and demo talk to: Apache Kafka (KRaft,
# one combined broker+controller), Redis and MinIO, all on 127.0.0.1 and non-default ports.
#
#   services.sh up     install what is missing, start what is not healthy, reuse what is
#   services.sh up kube   the same, and a Kubernetes control plane (etcd, kube-apiserver,
#                         kube-controller-manager, kube-scheduler) and a node (kubelet,
#                         containerd, runc) for the Kubernetes tests
#   services.sh up iceberg   the same, and PostgreSQL (an Iceberg SQL catalog's database) and
#                         an Iceberg REST catalog server; `up iceberg kube` starts both sets.
#                         Not in a plain `up`: the chaos tests' private set runs that, with
#                         the shared ports exported by make, and needs neither
#   services.sh down   stop only the servers this script started (by their PID files), and the
#                      node's pods; undo the node's changes to the host and check them
#   services.sh down node   only the node, the same way
#   services.sh import IMAGE.tar   import an OCI image archive into the node, when it runs
#   services.sh status one line per server
#   services.sh kafka  only Kafka: all that make demo's directory store needs
#   services.sh tools  build or install the tools the tests use beside the servers
#                      (promtool, DuckDB); make test runs it, make demo does not
#   services.sh duckdb [core]   DuckDB and the tests' readers; core: DuckDB alone, in a
#                      venv of its own (make demo's directory store)
#
# Downloads and builds go to $KARCHDEV_CACHE (default ~/.cache/karch) so that only a fresh machine
# pays for them; PID files, logs and data go to $KARCHDEV_STATE (default $KARCHDEV_CACHE/state).
set -euo pipefail

KAFKA_VERSION=4.3.1
LOG4J_VERSION=2.25.4
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
KUBE_VERSION=1.37.2 # keep in step with tests/kube/build.sh
CONTAINERD_VERSION=v2.2.1 # the node's container runtime, with its runc shim and ctr
CRICTL_VERSION=v1.37.0
# Bumped whenever the control plane's flags or credentials change, so that `up kube` restarts
# a control plane that an older script started.
KUBE_GENERATION=4
PROMETHEUS_VERSION=v0.316.0 # promtool, for the alert rules' unit tests (tests/alerts)
DUCKDB_VERSION=1.5.5 # DuckDB and its extensions (httpfs, iceberg, avro) from PyPI, for tests/audit; versions must match
PYARROW_VERSION=26.0.1 # beside DuckDB: an independent reader of the Parquet pieces
PYICEBERG_VERSION=0.12.0 # beside DuckDB: an independent reader and writer of Iceberg tables
PYICEBERG_CORE_VERSION=0.11.0 # pyiceberg's partition transforms, for its writes to a partitioned table
ICEBERG_VERSION=1.10.0 # the REST catalog server's Iceberg (iceberg-rest-pom.xml)
ICEBERG_AWSSDK_VERSION=2.33.13 # S3FileIO's AWS SDK: iceberg-aws leaves its version to us; one of 1.10's time
JETTY_VERSION=11.0.26 # the servlet container Iceberg's REST servlet is built for (Jakarta, Jetty 11)
PGJDBC_VERSION=42.7.8 # the REST catalog's JdbcCatalog talks to Postgres with it
SLF4J_VERSION=2.0.17

: "${KARCHDEV_CACHE:=$HOME/.cache/karch}"
: "${KARCHDEV_STATE:=$KARCHDEV_CACHE/state}"
: "${KARCHDEV_KAFKA_PORT:=19092}"
: "${KARCHDEV_KAFKA_CONTROLLER_PORT:=19093}"
: "${KARCHDEV_REDIS_PORT:=16379}"
: "${KARCHDEV_S3_PORT:=19000}"
: "${KARCHDEV_S3_ACCESS_KEY:=karchtest}"
: "${KARCHDEV_S3_SECRET_KEY:=karchtest-secret}"
: "${KARCHDEV_S3_BUCKET:=karch-test}"
# A second bucket, created with Object Lock (versioned, WORM), for the tests of locked writes.
: "${KARCHDEV_S3_LOCKED_BUCKET:=$KARCHDEV_S3_BUCKET-locked}"
# The name of the KMS key MinIO's static KMS serves, for SSE-S3 and SSE-KMS; the key itself is
# made once per state directory.
: "${KARCHDEV_S3_KMS_KEY:=karch-test-key}"
: "${KARCHDEV_ETCD_PORT:=12379}"
: "${KARCHDEV_KUBE_PORT:=16443}"
: "${KARCHDEV_KUBE_CM_PORT:=20257}"
: "${KARCHDEV_KUBE_SCHEDULER_PORT:=20259}"
: "${KARCHDEV_KUBELET_PORT:=20250}"
: "${KARCHDEV_KUBELET_HEALTHZ_PORT:=20248}"
: "${KARCHDEV_NODE_NAME:=karch-node}"
: "${KARCHDEV_READY_TIMEOUT:=90}"
# Set both to give Kafka a second listener, on KARCHDEV_KAFKA_PROXIED_PORT, that advertises
# KARCHDEV_KAFKA_PROXY_PORT: clients that bootstrap there reach the broker only through
# whatever listens on the proxy port (the chaos tests' fault proxy). Empty: no such listener.
: "${KARCHDEV_KAFKA_PROXIED_PORT:=}"
: "${KARCHDEV_KAFKA_PROXY_PORT:=}"
# Set to give Kafka a SASL_SSL listener (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for the user
# below) and an SSL listener that requires a client certificate (mTLS), and Redis a TLS port,
# all with certificates this script makes with openssl under $KARCHDEV_STATE/tls. Empty: none.
: "${KARCHDEV_KAFKA_SASL_PORT:=}"
: "${KARCHDEV_KAFKA_MTLS_PORT:=}"
: "${KARCHDEV_KAFKA_SASL_USER:=karch}"
: "${KARCHDEV_KAFKA_SASL_PASSWORD:=karch-kafka-secret}"
: "${KARCHDEV_REDIS_TLS_PORT:=}"
# PostgreSQL, for `up iceberg`: one login role owning the SQL catalog's database
# (karch_iceberg) and the REST catalog's (karch_rest).
: "${KARCHDEV_PG_PORT:=15432}"
: "${KARCHDEV_PG_USER:=karch}"
: "${KARCHDEV_PG_PASSWORD:=karch-pg-secret}"
: "${KARCHDEV_ICEBERG_REST_PORT:=18181}"

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
  printf '%s\0' "$@" >"$KARCHDEV_STATE/$name/cmd" # for crash_restart
  setsid "$@" >"$KARCHDEV_STATE/$name/log" 2>&1 </dev/null &
  echo $! >"$KARCHDEV_STATE/$name/pid"
}

# crash_restart NAME DOWN_SECONDS: kill -9 of one component of the control plane or the node
# (its process alone, as a crash would: containerd's shims and their containers live on),
# and the same command started again DOWN_SECONDS later, with its state as the crash left it.
# The cluster-failure tests (tests/kube) run it.
crash_restart() {
  local name=$1 down=$2 dir="$KARCHDEV_STATE/$1" pid ready
  case $name in
    etcd) ready=etcd_ready ;;
    kube-apiserver) ready=apiserver_ready ;;
    kube-controller-manager) ready=controller_ready ;;
    kube-scheduler) ready=scheduler_ready ;;
    containerd) ready=containerd_ready ;;
    kubelet) ready=kubelet_ready ;;
    *) die "crash-restart: $name is not a component of the control plane or the node" ;;
  esac
  [[ -f $dir/cmd ]] && ours "$name" || die "crash-restart: $name is not running from a command this script recorded (make services-down, then make kube-up)"
  pid=$(cat "$dir/pid")
  kill -KILL "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  log "$name killed (pid $pid); starting it again in ${down}s"
  sleep "$down"
  local -a cmd
  mapfile -d '' cmd <"$dir/cmd"
  [[ $name == containerd ]] && rm -f "$(containerd_sock)" # the dead one's socket would pass for ready
  setsid "${cmd[@]}" >>"$dir/log" 2>&1 </dev/null & # the log keeps what led to the crash
  echo $! >"$dir/pid"
  wait_ready "$name" "$ready"
}

# --- TLS ----------------------------------------------------------------------------------
# A private CA, a server certificate for 127.0.0.1 and localhost, and a client certificate
# for mTLS, made once per state directory: private keys never leave it, nor enter the repo.
TLS_STORE_PASSWORD=karch-test-store # of the PKCS12 keystore Kafka reads; guards nothing

tls_dir() { echo "$KARCHDEV_STATE/tls"; }

make_tls() {
  local d; d=$(tls_dir)
  [[ -f $d/server.p12 ]] && return
  ensure_cmd openssl openssl
  log "making a test CA and certificates with openssl in $d"
  rm -rf "$d.new" && mkdir -p "$d.new"
  (
    cd "$d.new"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=karch test CA" \
      -keyout ca.key -out ca.crt
    for who in server client; do
      openssl req -newkey rsa:2048 -nodes -subj "/CN=karch test $who" -keyout "$who.key" -out "$who.csr"
      openssl x509 -req -in "$who.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -out "$who.crt" \
        -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n')
    done
    openssl pkcs12 -export -in server.crt -inkey server.key -out server.p12 -passout "pass:$TLS_STORE_PASSWORD"
    chmod 600 ./*.key server.p12
  ) >"$d.log" 2>&1 || { cat "$d.log" >&2; die "making test certificates failed"; }
  mv "$d.new" "$d" && rm -f "$d.log"
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

kafka_ready() { kafka_listeners_open && grep -q 'Kafka Server started' "$KARCHDEV_STATE/kafka/log"; }

# kafka_listeners_open: true when every listener this configuration asks for accepts.
kafka_listeners_open() {
  local p
  for p in "$KARCHDEV_KAFKA_PORT" $KARCHDEV_KAFKA_SASL_PORT $KARCHDEV_KAFKA_MTLS_PORT; do port_open "$p" || return 1; done
}

# add_listener CONF NAME PORT ADVERTISED_PORT PROTOCOL
add_listener() {
  sed -i -e "s#^listeners=.*#&,$2://127.0.0.1:$3#" -e "s#^advertised.listeners=.*#&,$2://127.0.0.1:$4#" \
    -e "s#^listener.security.protocol.map=.*#&,$2:$5#" "$1"
}

# kafka_config DIR writes DIR/server.properties: the template, and the listeners asked for.
kafka_config() {
  local dir=$1 conf=$1/server.properties
  sed -e "s#@PORT@#$KARCHDEV_KAFKA_PORT#g" -e "s#@CPORT@#$KARCHDEV_KAFKA_CONTROLLER_PORT#g" \
    -e "s#@DATA@#$dir/data#g" "$here/kafka.properties" >"$conf"
  [[ -z $KARCHDEV_KAFKA_PROXIED_PORT ]] || add_listener "$conf" PROXIED "$KARCHDEV_KAFKA_PROXIED_PORT" "$KARCHDEV_KAFKA_PROXY_PORT" PLAINTEXT
  [[ -n $KARCHDEV_KAFKA_SASL_PORT$KARCHDEV_KAFKA_MTLS_PORT ]] || return 0
  local tls; tls=$(tls_dir)
  cat >>"$conf" <<EOF
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/server.p12
ssl.keystore.password=$TLS_STORE_PASSWORD
ssl.key.password=$TLS_STORE_PASSWORD
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.crt
EOF
  if [[ -n $KARCHDEV_KAFKA_SASL_PORT ]]; then
    add_listener "$conf" SASL_SSL "$KARCHDEV_KAFKA_SASL_PORT" "$KARCHDEV_KAFKA_SASL_PORT" SASL_SSL
    local scram='org.apache.kafka.common.security.scram.ScramLoginModule required;'
    cat >>"$conf" <<EOF
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KARCHDEV_KAFKA_SASL_USER="$KARCHDEV_KAFKA_SASL_PASSWORD";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=$scram
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$scram
EOF
  fi
  if [[ -n $KARCHDEV_KAFKA_MTLS_PORT ]]; then
    add_listener "$conf" SSL "$KARCHDEV_KAFKA_MTLS_PORT" "$KARCHDEV_KAFKA_MTLS_PORT" SSL
    echo "listener.name.ssl.ssl.client.auth=required" >>"$conf"
  fi
}

up_kafka() {
  if ours kafka && kafka_listeners_open; then log "kafka: reusing 127.0.0.1:$KARCHDEV_KAFKA_PORT"; return; fi
  if ours kafka; then log "kafka: restarting it with the listeners asked for"; down_one kafka; fi
  port_open "$KARCHDEV_KAFKA_PORT" && die "port $KARCHDEV_KAFKA_PORT is taken by a process this script did not start"
  install_kafka
  local dir="$KARCHDEV_STATE/kafka"
  [[ -z $KARCHDEV_KAFKA_SASL_PORT$KARCHDEV_KAFKA_MTLS_PORT ]] || make_tls
  # SCRAM credentials are written when the log is formatted: a log formatted without them
  # (by an older script) is formatted again. The tests make their own topics: none is lost.
  [[ -z $KARCHDEV_KAFKA_SASL_PORT || -f $dir/data/scram-$KARCHDEV_KAFKA_SASL_USER ]] || rm -rf "$dir/data"
  mkdir -p "$dir/data"
  kafka_config "$dir"
  local cp; cp="$(kafka_libs)/*"
  if [[ ! -f $dir/data/meta.properties ]]; then
    local scram=() m
    if [[ -n $KARCHDEV_KAFKA_SASL_PORT ]]; then
      for m in SCRAM-SHA-256 SCRAM-SHA-512; do
        scram+=(--add-scram "$m=[name=$KARCHDEV_KAFKA_SASL_USER,password=$KARCHDEV_KAFKA_SASL_PASSWORD]")
      done
    fi
    java -cp "$cp" kafka.tools.StorageTool format -t "$(java -cp "$cp" kafka.tools.StorageTool random-uuid)" \
      -c "$dir/server.properties" "${scram[@]}" >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; die "kafka storage format failed"; }
    [[ -z $KARCHDEV_KAFKA_SASL_PORT ]] || touch "$dir/data/scram-$KARCHDEV_KAFKA_SASL_USER"
  fi
  start kafka java -Xms256m -Xmx1g -XX:+UseG1GC -Dlog4j2.configurationFile="$here/kafka-log4j2.properties" \
    -cp "$cp" kafka.Kafka "$dir/server.properties"
  wait_ready kafka kafka_ready
}

# --- Redis --------------------------------------------------------------------------------

redis_ready() { redis-cli -p "$KARCHDEV_REDIS_PORT" ping >/dev/null 2>&1; }

redis_ports_open() { port_open "$KARCHDEV_REDIS_PORT" && { [[ -z $KARCHDEV_REDIS_TLS_PORT ]] || port_open "$KARCHDEV_REDIS_TLS_PORT"; }; }

up_redis() {
  if ours redis && redis_ready && redis_ports_open; then log "redis: reusing 127.0.0.1:$KARCHDEV_REDIS_PORT"; return; fi
  if ours redis; then log "redis: restarting it with the ports asked for"; down_one redis; fi
  port_open "$KARCHDEV_REDIS_PORT" && die "port $KARCHDEV_REDIS_PORT is taken by a process this script did not start"
  ensure_cmd redis-server redis-server
  local tls=()
  if [[ -n $KARCHDEV_REDIS_TLS_PORT ]]; then
    make_tls
    local d; d=$(tls_dir)
    # Client certificates are optional: the tests try both a plain TLS client and mTLS.
    tls=(--tls-port "$KARCHDEV_REDIS_TLS_PORT" --tls-cert-file "$d/server.crt" --tls-key-file "$d/server.key"
      --tls-ca-cert-file "$d/ca.crt" --tls-auth-clients optional)
  fi
  start redis redis-server --bind 127.0.0.1 --port "$KARCHDEV_REDIS_PORT" --save '' --appendonly no \
    --protected-mode yes --dir "$KARCHDEV_STATE/redis" "${tls[@]}"
  wait_ready redis redis_ready
  redis_ports_open || die "redis did not open its TLS port $KARCHDEV_REDIS_TLS_PORT; its log is $KARCHDEV_STATE/redis/log"
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

# make_bucket NAME [HEADER] signs a CreateBucket with curl's SigV4 support; 409 means it
# exists already.
make_bucket() {
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" ${2:+-H "$2"} \
    --user "$KARCHDEV_S3_ACCESS_KEY:$KARCHDEV_S3_SECRET_KEY" "$(s3_url)/$1")
  [[ $code == 200 || $code == 409 ]] || die "creating bucket $1 answered HTTP $code"
}

make_buckets() {
  make_bucket "$KARCHDEV_S3_BUCKET"
  make_bucket "$KARCHDEV_S3_LOCKED_BUCKET" "x-amz-bucket-object-lock-enabled: true"
}

up_minio() {
  local dir="$KARCHDEV_STATE/minio"
  # kms-started says the running server has the static KMS key: one started by an older
  # script has none, and is restarted.
  if ours minio && minio_ready && [[ -f $dir/kms-started ]]; then log "minio: reusing $(s3_url)"; make_buckets; return; fi
  if ours minio; then log "minio: restarting it with a KMS key"; down_one minio; fi
  port_open "$KARCHDEV_S3_PORT" && die "port $KARCHDEV_S3_PORT is taken by a process this script did not start"
  install_minio
  mkdir -p "$dir/data"
  if [[ ! -f $dir/kms-key ]]; then
    ensure_cmd openssl openssl
    (umask 077 && openssl rand -base64 32 >"$dir/kms-key")
  fi
  rm -f "$dir/kms-started"
  MINIO_ROOT_USER=$KARCHDEV_S3_ACCESS_KEY MINIO_ROOT_PASSWORD=$KARCHDEV_S3_SECRET_KEY \
    MINIO_KMS_SECRET_KEY="$KARCHDEV_S3_KMS_KEY:$(cat "$dir/kms-key")" \
    MINIO_BROWSER=off MINIO_UPDATE=off start minio "$(minio_bin)" server --quiet \
    --address "127.0.0.1:$KARCHDEV_S3_PORT" --console-address "127.0.0.1:$((KARCHDEV_S3_PORT + 1))" \
    "$dir/data"
  wait_ready minio minio_ready
  touch "$dir/kms-started"
  make_buckets
}

# --- PostgreSQL ---------------------------------------------------------------------------
# For `up iceberg`: the database of iceberg-go's SQL catalog (karch_iceberg) and the store of
# the REST catalog below (karch_rest). Debian's server binaries, a cluster of our own in the
# state directory, TCP on 127.0.0.1 only with password (SCRAM) logins; the superuser has only
# the Unix socket, in a directory only root and the server's user can enter.

PG_DATABASES=(karch_iceberg karch_rest)

pg_bin() { echo "$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)/$1"; }
pg_socket_dir() { echo "$KARCHDEV_STATE/postgres/run"; }
pg_ready() { "$(pg_bin pg_isready)" -q -h 127.0.0.1 -p "$KARCHDEV_PG_PORT"; }

# Postgres refuses to run as root: it runs as the postgres user that Debian's package makes.
# The state directory may lie under a home only root can enter (/root is 0700), so it keeps
# one capability across exec, CAP_DAC_READ_SEARCH, to walk there; it writes only the
# directories it owns.
PG_AS=(setpriv --reuid=postgres --regid=postgres --clear-groups
  --inh-caps=+dac_read_search --ambient-caps=+dac_read_search --)

install_postgres() {
  ensure_cmd "$(pg_bin postgres)" postgresql # preinstalled on these machines
  [[ -x $(pg_bin postgres) ]] || die "postgresql installed, but no /usr/lib/postgresql/*/bin/postgres"
  id -u postgres >/dev/null 2>&1 || die "no postgres user; Debian's postgresql-common makes it"
}

# pg_databases makes the login role and its databases, or sets the password again: cheap, so
# it runs on every up, as make_buckets does.
pg_databases() {
  "$(pg_bin psql)" -X -q -v ON_ERROR_STOP=1 -h "$(pg_socket_dir)" -p "$KARCHDEV_PG_PORT" -U postgres -d postgres \
    -v user="$KARCHDEV_PG_USER" -v password="$KARCHDEV_PG_PASSWORD" -v dbs="${PG_DATABASES[*]}" >/dev/null <<'SQL' \
    || die "postgres: making role $KARCHDEV_PG_USER and databases ${PG_DATABASES[*]} failed"
SELECT format('CREATE ROLE %I LOGIN', :'user') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
ALTER ROLE :"user" LOGIN PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I', d, :'user') FROM unnest(string_to_array(:'dbs', ' ')) AS d
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = d) \gexec
SQL
}

up_postgres() {
  local dir="$KARCHDEV_STATE/postgres"
  if ours postgres && pg_ready; then log "postgres: reusing 127.0.0.1:$KARCHDEV_PG_PORT"; pg_databases; return; fi
  down_one postgres
  port_open "$KARCHDEV_PG_PORT" && die "port $KARCHDEV_PG_PORT is taken by a process this script did not start"
  install_postgres
  mkdir -p "$dir/run"
  chown postgres: "$dir/run" && chmod 700 "$dir/run"
  if [[ ! -f $dir/data/PG_VERSION ]]; then
    rm -rf "$dir/data" && mkdir -p "$dir/data" && chown postgres: "$dir/data"
    "${PG_AS[@]}" "$(pg_bin initdb)" -D "$dir/data" -U postgres -E UTF8 --no-locale \
      --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; die "postgres: initdb failed"; }
  fi
  # synchronous_commit off: a test database may lose its last commits in a crash, never its
  # consistency, and commits stop waiting on the disk.
  start postgres "${PG_AS[@]}" "$(pg_bin postgres)" -D "$dir/data" -c listen_addresses=127.0.0.1 \
    -c port="$KARCHDEV_PG_PORT" -c unix_socket_directories="$(pg_socket_dir)" -c synchronous_commit=off
  wait_ready postgres pg_ready
  pg_databases
}

# --- Iceberg REST catalog -----------------------------------------------------------------
# For `up iceberg`, after Postgres and MinIO: Iceberg's own REST catalog servlet (Java, jars
# from Maven Central by iceberg-rest-pom.xml) behind our launcher, IcebergRest.java, which
# binds 127.0.0.1. Its catalog is a JdbcCatalog in karch_rest; table metadata goes to MinIO
# under s3://$KARCHDEV_S3_BUCKET/iceberg-rest through S3FileIO, where clients (iceberg-go,
# pyiceberg) write data and manifests with their own S3 clients.

iceberg_rest_home() { echo "$KARCHDEV_CACHE/iceberg-rest-$ICEBERG_VERSION"; }
iceberg_rest_url() { echo "http://127.0.0.1:$KARCHDEV_ICEBERG_REST_PORT"; }
iceberg_rest_ready() { curl -fs -o /dev/null "$(iceberg_rest_url)/v1/config"; }

# iceberg_rest_stamp names what the jars were fetched for: a changed pom or version fetches
# them again.
iceberg_rest_stamp() {
  echo "$ICEBERG_VERSION $ICEBERG_AWSSDK_VERSION $JETTY_VERSION $PGJDBC_VERSION $SLF4J_VERSION" \
    "$(sha256sum <"$here/iceberg-rest-pom.xml")"
}

install_iceberg_rest() {
  local home; home=$(iceberg_rest_home)
  if [[ $(cat "$home/libs/.complete" 2>/dev/null) != "$(iceberg_rest_stamp)" ]]; then
    ensure_cmd java openjdk-17-jre-headless
    ensure_cmd mvn maven
    log "fetching Iceberg $ICEBERG_VERSION's REST catalog jars from Maven Central into $home/libs"
    rm -rf "$home/libs" && mkdir -p "$home/libs"
    mvn -q -B -f "$here/iceberg-rest-pom.xml" -Diceberg.version="$ICEBERG_VERSION" \
      -Dawssdk.version="$ICEBERG_AWSSDK_VERSION" -Djetty.version="$JETTY_VERSION" \
      -Dpgjdbc.version="$PGJDBC_VERSION" -Dslf4j.version="$SLF4J_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$home/libs" >&2
    iceberg_rest_stamp >"$home/libs/.complete"
  fi
  # The launcher is compiled again whenever its source differs from the one compiled last.
  if ! cmp -s "$here/IcebergRest.java" "$home/classes/IcebergRest.java"; then
    ensure_cmd javac openjdk-17-jdk-headless
    rm -rf "$home/classes" && mkdir -p "$home/classes"
    javac -d "$home/classes" -cp "$home/libs/*" "$here/IcebergRest.java" >&2
    cp "$here/IcebergRest.java" "$home/classes/"
  fi
}

up_iceberg_rest() {
  local dir="$KARCHDEV_STATE/iceberg-rest"
  # The state directory keeps the launcher's source the running server was started from: one
  # started from an older launcher is restarted.
  if ours iceberg-rest && iceberg_rest_ready && cmp -s "$here/IcebergRest.java" "$dir/IcebergRest.java"; then
    log "iceberg-rest: reusing $(iceberg_rest_url)"; return
  fi
  if ours iceberg-rest; then log "iceberg-rest: restarting it with the current launcher"; down_one iceberg-rest; fi
  port_open "$KARCHDEV_ICEBERG_REST_PORT" && die "port $KARCHDEV_ICEBERG_REST_PORT is taken by a process this script did not start"
  install_iceberg_rest
  local home; home=$(iceberg_rest_home)
  mkdir -p "$dir" && cp "$here/IcebergRest.java" "$dir/"
  # The catalog's properties (see IcebergRest.java). The metadata service off and the region
  # given: the AWS SDK never looks beyond 127.0.0.1 for credentials or a region.
  AWS_EC2_METADATA_DISABLED=true AWS_REGION=us-east-1 \
    CATALOG_CATALOG__IMPL=org.apache.iceberg.jdbc.JdbcCatalog \
    CATALOG_URI="jdbc:postgresql://127.0.0.1:$KARCHDEV_PG_PORT/karch_rest" \
    CATALOG_JDBC_USER="$KARCHDEV_PG_USER" CATALOG_JDBC_PASSWORD="$KARCHDEV_PG_PASSWORD" \
    CATALOG_JDBC_SCHEMA__VERSION=V1 \
    CATALOG_WAREHOUSE="s3://$KARCHDEV_S3_BUCKET/iceberg-rest" \
    CATALOG_IO__IMPL=org.apache.iceberg.aws.s3.S3FileIO \
    CATALOG_S3_ENDPOINT="$(s3_url)" CATALOG_S3_PATH__STYLE__ACCESS=true CATALOG_CLIENT_REGION=us-east-1 \
    CATALOG_S3_ACCESS__KEY__ID="$KARCHDEV_S3_ACCESS_KEY" CATALOG_S3_SECRET__ACCESS__KEY="$KARCHDEV_S3_SECRET_KEY" \
    start iceberg-rest java -Xms64m -Xmx512m -cp "$home/classes:$home/libs/*" IcebergRest 127.0.0.1 "$KARCHDEV_ICEBERG_REST_PORT"
  wait_ready iceberg-rest iceberg_rest_ready
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
# Not a server: DuckDB in a virtualenv of its own, with the httpfs, iceberg and avro (which
# iceberg loads its manifests with) extensions from their PyPI packages (no extension download
# at run time), so tests read the archive as users will; pyarrow beside it reads the Parquet
# pieces with Apache Arrow's own reader, and pyiceberg reads and writes Iceberg tables through
# the catalogs above (its FileIO is pyarrow's S3 filesystem: no s3fs).

duckdb_packages=("duckdb==$DUCKDB_VERSION" "duckdb-extension-httpfs==$DUCKDB_VERSION"
  "duckdb-extension-iceberg==$DUCKDB_VERSION" "duckdb-extension-avro==$DUCKDB_VERSION"
  "pyarrow==$PYARROW_VERSION" "pyiceberg[pyarrow]==$PYICEBERG_VERSION" "pyiceberg-core==$PYICEBERG_CORE_VERSION")

# duckdb_venv_current VENV PACKAGE...: true when VENV has every package at its version, so
# that a venv made by an older script (fewer packages, other versions) is made again.
duckdb_venv_current() {
  "$1/bin/python" - "${@:2}" <<'PY' 2>/dev/null
import importlib.metadata as m, re, sys
for want in sys.argv[1:]:
    name, version = want.split("==")
    if m.version(re.sub(r"\[.*\]", "", name)) != version:
        sys.exit(1)
PY
}

# make_venv VENV WHAT PACKAGE...: VENV with exactly these packages, made again when it lacks one.
make_venv() {
  local venv=$1 what=$2; shift 2
  [[ -x $venv/bin/python ]] && duckdb_venv_current "$venv" "$@" && return
  if ! python3 -m venv --help >/dev/null 2>&1; then
    ensure_cmd python3 python3
    apt-get install -y -qq python3-venv >&2 || die "could not install python3-venv; as root: apt-get install python3-venv"
  fi
  log "installing $what from PyPI into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$@" >&2
}

install_duckdb() {
  if [[ ${1:-} == core ]]; then
    make_venv "$KARCHDEV_CACHE/duckdb-core-$DUCKDB_VERSION" "DuckDB $DUCKDB_VERSION" "duckdb==$DUCKDB_VERSION"
    ln -sfn "duckdb-core-$DUCKDB_VERSION" "$KARCHDEV_CACHE/duckdb-core" # tests/demo/demo.sh
    log "duckdb: $KARCHDEV_CACHE/duckdb-core/bin/python ($DUCKDB_VERSION)"
    return
  fi
  make_venv "$KARCHDEV_CACHE/duckdb-$DUCKDB_VERSION" \
    "DuckDB $DUCKDB_VERSION, its httpfs, iceberg and avro extensions, pyarrow $PYARROW_VERSION and pyiceberg $PYICEBERG_VERSION" \
    "${duckdb_packages[@]}"
  ln -sfn "duckdb-$DUCKDB_VERSION" "$KARCHDEV_CACHE/duckdb" # KARCH_TEST_DUCKDB_PYTHON in the Makefile
  log "duckdb: $KARCHDEV_CACHE/duckdb/bin/python ($DUCKDB_VERSION, pyarrow $PYARROW_VERSION, pyiceberg $PYICEBERG_VERSION)"
}

# --- Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler --
# Started only by `services.sh up kube` (make test), since its first build takes minutes and
# the demo does not need it. The four are one unit: when any is unhealthy, all restart on a
# fresh etcd, so no test ever sees a half-remembered cluster. Every certificate is signed by a
# CA made here with openssl, once per state directory; nothing secret is committed.

kube_dir() { echo "$KARCHDEV_STATE/kube"; }
pki() { echo "$(kube_dir)/pki/$1"; }
kube_bin() { echo "$KARCHDEV_CACHE/kube-$KUBE_VERSION/$1"; }
kube_url() { echo "https://127.0.0.1:$KARCHDEV_KUBE_PORT"; }
etcd_ready() { curl -fs "http://127.0.0.1:$KARCHDEV_ETCD_PORT/health" | grep -q '"health":"true"'; }
apiserver_ready() { curl -fs --cacert "$(pki ca.crt)" -H "Authorization: Bearer $(cat "$(kube_dir)/admin.token")" "$(kube_url)/readyz" >/dev/null; }
controller_ready() { curl -fsk "https://127.0.0.1:$KARCHDEV_KUBE_CM_PORT/healthz" >/dev/null; }
scheduler_ready() { curl -fsk "https://127.0.0.1:$KARCHDEV_KUBE_SCHEDULER_PORT/healthz" >/dev/null; }
kube_healthy() {
  [[ $(cat "$(kube_dir)/generation" 2>/dev/null) == "$KUBE_GENERATION" ]] &&
    ours etcd && ours kube-apiserver && ours kube-controller-manager && ours kube-scheduler &&
    etcd_ready && apiserver_ready && controller_ready && scheduler_ready
}

# cert NAME SUBJECT EXTENSIONS: a key and a certificate signed by the local CA, once.
cert() {
  local name=$1 subject=$2 ext=$3
  [[ -f $(pki "$name.crt") ]] && return
  openssl req -new -newkey rsa:2048 -nodes -keyout "$(pki "$name.key")" -subj "$subject" -out "$(pki "$name.csr")" 2>/dev/null
  openssl x509 -req -in "$(pki "$name.csr")" -CA "$(pki ca.crt)" -CAkey "$(pki ca.key)" -CAcreateserial -days 3650 \
    -extfile <(printf '%s\n' "$ext") -out "$(pki "$name.crt")" 2>/dev/null
  rm -f "$(pki "$name.csr")"
}

# kube_credentials writes the CA and certificates, the service-account signing key, the admin
# token and kubeconfigs, once per state directory.
kube_credentials() {
  local dir; dir=$(kube_dir)
  mkdir -p "$dir/pki"
  chmod 700 "$dir/pki"
  [[ -f $(pki ca.crt) ]] || openssl req -x509 -newkey rsa:2048 -nodes -keyout "$(pki ca.key)" -out "$(pki ca.crt)" \
    -days 3650 -subj "/CN=karch-local-ca" 2>/dev/null
  cert apiserver "/CN=kube-apiserver" "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc
extendedKeyUsage=serverAuth"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
  cert node "/O=system:nodes/CN=system:node:$KARCHDEV_NODE_NAME" "extendedKeyUsage=clientAuth"
  cert kubelet "/CN=$KARCHDEV_NODE_NAME" "subjectAltName=IP:127.0.0.1,DNS:$KARCHDEV_NODE_NAME
extendedKeyUsage=serverAuth"
  [[ -f $dir/sa.key ]] || openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
  [[ -f $dir/admin.token ]] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/admin.token"
  echo "$(cat "$dir/admin.token"),karch-admin,karch-admin,system:masters" >"$dir/tokens.csv"
  cat >"$dir/admin.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$(kube_url)", certificate-authority: "$(pki ca.crt)"}}]
users: [{name: admin, user: {token: "$(cat "$dir/admin.token")"}}]
contexts: [{name: local, context: {cluster: local, user: admin}}]
current-context: local
KC
  cat >"$dir/node.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$(kube_url)", certificate-authority: "$(pki ca.crt)"}}]
users: [{name: node, user: {client-certificate: "$(pki node.crt)", client-key: "$(pki node.key)"}}]
contexts: [{name: local, context: {cluster: local, user: node}}]
current-context: local
KC
}

up_kube() {
  if kube_healthy; then log "kube: reusing $(kube_url) (kubeconfig: $(kube_dir)/admin.kubeconfig)"; return; fi
  down_node
  for s in kube-scheduler kube-controller-manager kube-apiserver etcd; do down_one "$s"; done
  for p in "$KARCHDEV_ETCD_PORT" "$KARCHDEV_KUBE_PORT" "$KARCHDEV_KUBE_CM_PORT" "$KARCHDEV_KUBE_SCHEDULER_PORT"; do
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
    --endpoint-reconciler-type none --tls-cert-file "$(pki apiserver.crt)" --tls-private-key-file "$(pki apiserver.key)" \
    --client-ca-file "$(pki ca.crt)" --token-auth-file "$dir/tokens.csv" \
    --kubelet-client-certificate "$(pki apiserver-kubelet-client.crt)" --kubelet-client-key "$(pki apiserver-kubelet-client.key)" \
    --kubelet-certificate-authority "$(pki ca.crt)" --kubelet-preferred-address-types InternalIP \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --service-cluster-ip-range 10.96.0.0/16 \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$dir/sa.key" \
    --service-account-signing-key-file "$dir/sa.key"
  wait_ready kube-apiserver apiserver_ready
  start kube-controller-manager "$(kube_bin kube-controller-manager)" --kubeconfig "$dir/admin.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KARCHDEV_KUBE_CM_PORT" --cert-dir "$dir/cm-certs" --leader-elect=false \
    --controllers job,cronjob,ttl-after-finished,garbagecollector,serviceaccount,serviceaccount-token,namespace,root-ca-cert-publisher,podgc,nodelifecycle \
    --service-account-private-key-file "$dir/sa.key" --root-ca-file "$(pki ca.crt)" --concurrent-job-syncs 2
  wait_ready kube-controller-manager controller_ready
  start kube-scheduler "$(kube_bin kube-scheduler)" --kubeconfig "$dir/admin.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KARCHDEV_KUBE_SCHEDULER_PORT" --cert-dir "$dir/scheduler-certs" --leader-elect=false
  wait_ready kube-scheduler scheduler_ready
  echo "$KUBE_GENERATION" >"$dir/generation"
  log "kube: ready at $(kube_url) (kubeconfig: $dir/admin.kubeconfig)"
}

# --- The node: containerd, runc and a kubelet, registered with the control plane ----------
# A real node runs the tests' pods as containers. It changes the host as any kubelet does
# (sysctls, iptables chains, cgroups, a bind mount of its root, /var/log/containers, runc's and
# the shims' directories); `up` records the host as it found it before the first start, and
# `down` undoes every change and then checks the host against that record, failing with the
# difference. Pods run with hostNetwork on 127.0.0.1; the CNI configuration gives any other pod
# a loopback interface only, so that no pod ever has an address, or sends traffic, outside
# 127.0.0.0/8. Images come from OCI archives imported here; the registry configuration sends
# every pull to 127.0.0.1, so a missing image fails instead of leaving the machine.

node_dir() { echo "$KARCHDEV_STATE/node"; }
containerd_bin() { echo "$KARCHDEV_CACHE/containerd-$CONTAINERD_VERSION/$1"; }
containerd_sock() { echo "$(node_dir)/containerd/containerd.sock"; }
ctr_() { "$(containerd_bin ctr)" --address "$(containerd_sock)" -n k8s.io "$@"; }
containerd_ready() { test -S "$(containerd_sock)" && ctr_ version >/dev/null 2>&1; }
crictl_() { "$(containerd_bin crictl)" --runtime-endpoint "unix://$(containerd_sock)" --timeout 30s "$@"; }
pause_image() { echo "localhost/karch/pause:1"; }
kubelet_ready() { curl -fs "http://127.0.0.1:$KARCHDEV_KUBELET_HEALTHZ_PORT/healthz" >/dev/null; }
node_ready() {
  kubectl --kubeconfig "$(kube_dir)/admin.kubeconfig" get node "$KARCHDEV_NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True
}
node_healthy() { ours containerd && ours kubelet && kubelet_ready && node_ready; }

install_containerd() {
  local out; out=$(dirname "$(containerd_bin x)")
  [[ -x $out/crictl ]] && return
  log "building containerd $CONTAINERD_VERSION, its runc shim, ctr and crictl $CRICTL_VERSION from the Go module proxy (about 2 minutes, once)"
  local gobin; gobin=$(mktemp -d)
  for c in containerd containerd-shim-runc-v2 ctr; do
    CGO_ENABLED=0 GOBIN=$gobin GOFLAGS=-buildvcs=false go install -tags "no_btrfs no_devmapper no_zfs" \
      "github.com/containerd/containerd/v2/cmd/$c@$CONTAINERD_VERSION" >&2
  done
  CGO_ENABLED=0 GOBIN=$gobin GOFLAGS=-buildvcs=false go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" >&2
  mkdir -p "$out.tmp"
  mv "$gobin"/* "$out.tmp/"
  rm -rf "$out" "$gobin" && mv "$out.tmp" "$out"
}

# iptables_facts keeps, of iptables-save's output, the table of each rule and chain, the rules,
# the chains a table's own do not include, and built-in chains whose policy is not ACCEPT.
iptables_facts() {
  awk '/^\*/ {t = substr($0, 2); next}
       /^#/ || /^COMMIT/ {next}
       /^:/ {if ($2 == "ACCEPT" && $1 ~ /^:(INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING)$/) next
             print t " " $1 " " $2; next}
       {print t " " $0}'
}

# node_paths are the host directories a kubelet, containerd and the CNI plugins may create.
node_paths=(/var/log/containers /var/log/pods /run/containerd /var/run/nri /var/lib/kubelet /var/lib/containerd
  /etc/cni /opt/cni /var/lib/cni /run/netns /etc/kubernetes /run/runc)

# host_state prints what a node changes on the host, one line per fact, in a stable order.
host_state() {
  local k
  for k in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys \
    kernel.keys.root_maxbytes net.ipv4.ip_forward; do
    echo "sysctl $k=$(sysctl -n "$k" 2>/dev/null)"
  done
  # Chains and rules only: a table that exists with nothing in it (iptables-nft makes them on
  # first use) is no change.
  iptables-save 2>/dev/null | iptables_facts | sed 's/^/iptables /'
  ip6tables-save 2>/dev/null | iptables_facts | sed 's/^/ip6tables /'
  ip -o link show | awk -F': ' '{print "link " $2}' | sed 's/@.*//' | sort
  findmnt -rn -o TARGET | sort | sed 's/^/mount /'
  find /sys/fs/cgroup -maxdepth 2 -type d -name 'kubepods*' 2>/dev/null | sort | sed 's/^/cgroup /'
  for k in "${node_paths[@]}"; do
    if [[ -e $k ]]; then echo "path $k"; fi
  done
}

# node_config writes containerd's and the kubelet's configuration and the CNI configuration.
node_config() {
  local nd; nd=$(node_dir)
  mkdir -p "$nd/containerd/certs.d/_default" "$nd/cni" "$nd/kubelet" "$nd/manifests" "$nd/pod-logs"
  printf 'server = "http://127.0.0.1:9"\n\n[host."http://127.0.0.1:9"]\n  capabilities = ["pull", "resolve"]\n' \
    >"$nd/containerd/certs.d/_default/hosts.toml"
  cat >"$nd/cni/10-karch-loopback.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "karch-loopback", "plugins": [{"type": "loopback"}]}
JSON
  cat >"$nd/containerd/config.toml" <<TOML
version = 3
root = '$nd/containerd/root'
state = '$nd/containerd/state'
disabled_plugins = ['io.containerd.nri.v1.nri', 'io.containerd.internal.v1.opt']

[grpc]
  address = '$(containerd_sock)'

[ttrpc]
  address = '$(containerd_sock).ttrpc'

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '$(pause_image)'
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = '$nd/containerd/certs.d'
  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    cdi_spec_dirs = []
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '$(command -v runc)'
        Root = '$nd/runc'
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['/usr/lib/cni']
      conf_dir = '$nd/cni'
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
TOML
  cat >"$nd/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KARCHDEV_KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KARCHDEV_KUBELET_HEALTHZ_PORT
tlsCertFile: $(pki kubelet.crt)
tlsPrivateKeyFile: $(pki kubelet.key)
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: $(pki ca.crt)}}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$(containerd_sock)
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
staticPodPath: $nd/manifests
podLogsDir: $nd/pod-logs
resolvConf: /etc/resolv.conf
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
shutdownGracePeriod: 0s
YAML
}

# node_images builds the pause image and imports it; `make image` and the tests import karch's.
node_images() {
  local nd; nd=$(node_dir)
  CGO_ENABLED=0 go build -C "$here/../.." -trimpath -ldflags "-s -w" -o "$nd/pause" ./tools/pause
  go run -C "$here/../.." ./tools/image -binary "$nd/pause" -path /pause -user 65535:65535 -ca-certs "" \
    -name "$(pause_image)" -out "$nd/pause.tar"
  ctr_ images import "$nd/pause.tar" >"$nd/import.log" 2>&1 || { cat "$nd/import.log" >&2; die "node: importing the pause image failed"; }
}

up_node() {
  if node_healthy; then log "node: reusing $KARCHDEV_NODE_NAME"; return; fi
  down_node
  for p in "$KARCHDEV_KUBELET_PORT" "$KARCHDEV_KUBELET_HEALTHZ_PORT"; do
    port_open "$p" && die "port $p is taken by a process this script did not start"
  done
  ensure_cmd runc runc
  ensure_cmd iptables iptables
  [[ -d /usr/lib/cni ]] || ensure_cmd /usr/lib/cni/loopback containernetworking-plugins
  install_containerd
  mkdir -p "$KARCHDEV_CACHE/bin" # ctr and crictl for the tests (KARCH_TEST_CTR) and by hand
  ln -sfn "../containerd-$CONTAINERD_VERSION/ctr" "$KARCHDEV_CACHE/bin/ctr"
  ln -sfn "../containerd-$CONTAINERD_VERSION/crictl" "$KARCHDEV_CACHE/bin/crictl"
  local nd; nd=$(node_dir)
  mkdir -p "$nd"
  [[ -f $nd/host.before ]] || host_state >"$nd/host.before"
  node_config
  # A socket file left by a containerd that died with its machine would pass for a ready one.
  rm -f "$(containerd_sock)"
  start containerd "$(containerd_bin containerd)" --config "$nd/containerd/config.toml"
  wait_ready containerd containerd_ready
  node_images
  start kubelet "$(kube_bin kubelet)" --config "$nd/kubelet.yaml" --kubeconfig "$(kube_dir)/node.kubeconfig" \
    --root-dir "$nd/kubelet" --hostname-override "$KARCHDEV_NODE_NAME" --node-ip 127.0.0.1 \
    --node-labels karch.io/node=local --v 1
  wait_ready kubelet node_ready
  log "node: $KARCHDEV_NODE_NAME Ready (kubelet v$KUBE_VERSION, containerd $CONTAINERD_VERSION; containerd socket $(containerd_sock))"
}

# down_node stops the kubelet, every pod and containerd, then undoes the host changes and
# checks the host against the record `up` made.
down_node() {
  local nd; nd=$(node_dir)
  [[ -d $nd ]] || return 0
  down_one kubelet
  if ours containerd; then
    crictl_ rmp --all --force >/dev/null 2>&1 || log "node: removing pods failed; killing what is left"
  fi
  down_one containerd
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $(containerd_sock)" 2>/dev/null || true
  local cg pid
  for cg in $(find /sys/fs/cgroup -type d -path '*/kubepods*' 2>/dev/null | sort -r); do
    while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$cg/cgroup.procs"
  done
  sleep 0.5
  { findmnt -rn -o TARGET | grep -F "$nd/" || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  umount -l "$nd/kubelet" 2>/dev/null || true
  for cg in $(find /sys/fs/cgroup -type d -path '*/kubepods*' 2>/dev/null | sort -r); do rmdir "$cg" 2>/dev/null || true; done
  restore_host "$nd/host.before"
  rm -rf "$nd/containerd/state" "$nd/runc" "$nd/kubelet/pods" "$nd/pod-logs"
  if [[ -f $nd/host.before ]]; then
    if ! diff <(cat "$nd/host.before") <(host_state) >"$nd/host.diff"; then
      log "node: the host differs from before the node started (< before, > now):"
      cat "$nd/host.diff" >&2
      die "node: the host is not as the node found it; see above"
    fi
    rm -f "$nd/host.before" "$nd/host.diff"
    log "node: the host is as the node found it"
  fi
}

# restore_host undoes what the kubelet changes, by the record BEFORE: sysctls set back,
# iptables chains and rules it added removed, directories it created removed.
restore_host() {
  local before=$1 line k v tool table chain
  [[ -f $before ]] || return 0
  { grep '^sysctl ' "$before" || true; } | while read -r _ line; do
    k=${line%%=*} v=${line#*=}
    if [[ -n $v && $(sysctl -n "$k" 2>/dev/null) != "$v" ]]; then sysctl -q -w "$k=$v" >/dev/null; fi
  done
  for tool in iptables ip6tables; do
    command -v "$tool" >/dev/null || continue
    for table in filter nat mangle; do
      # Chains the node added (never a built-in one): rules that jump to them go first, then
      # the chains.
      local added=() was
      was=$({ grep "^$tool " "$before" || true; } | awk -v t="$table" '$2 == t && $3 ~ /^:/ {print substr($3, 2)}')
      for chain in $("$tool-save" -t "$table" 2>/dev/null | sed -n 's/^:\([^ ]*\) .*/\1/p'); do
        case $chain in INPUT | OUTPUT | FORWARD | PREROUTING | POSTROUTING) continue ;; esac
        grep -qx "$chain" <<<"$was" || added+=("$chain")
      done
      for chain in "${added[@]}"; do
        { "$tool" -t "$table" -S 2>/dev/null | grep -E -- "-j $chain( |\$)" || true; } | while read -r line; do
          eval "$tool -w -t $table ${line/#-A/-D}" 2>/dev/null || true
        done
      done
      for chain in "${added[@]}"; do "$tool" -w -t "$table" -F "$chain" 2>/dev/null || true; done
      for chain in "${added[@]}"; do "$tool" -w -t "$table" -X "$chain" 2>/dev/null || true; done
    done
  done
  for k in "${node_paths[@]}"; do
    if [[ -e $k ]] && ! grep -qx "path $k" "$before"; then rm -rf "$k"; fi
  done
  return 0
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
    for extra in "${@:2}"; do
      case $extra in
        kube) up_kube; up_node ;;
        iceberg) up_postgres; up_iceberg_rest ;;
        postgres) up_postgres ;;
        *) die "usage: $0 up [iceberg] [postgres] [kube]" ;;
      esac
    done
    ;;
  down)
    down_node
    [[ ${2:-} == node ]] && exit 0
    for s in kube-scheduler kube-controller-manager kube-apiserver etcd iceberg-rest postgres minio kafka redis; do down_one "$s"; done
    ;;
  status) for s in kafka redis minio postgres iceberg-rest etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet; do status_one "$s"; done ;;
  kafka)
    mkdir -p "$KARCHDEV_STATE"
    ensure_cmd zstd zstd
    up_kafka
    ;;
  crash-restart) crash_restart "${2:?usage: $0 crash-restart NAME SECONDS}" "${3:-1}" ;;
  tools) install_promtool; install_duckdb ;;
  duckdb) install_duckdb "${2:-}" ;;
  import)
    [[ -f ${2:-} ]] || die "usage: $0 import IMAGE.tar"
    if ! node_healthy; then log "node: not running (make kube-up starts it); $2 not imported"; exit 0; fi
    ctr_ images import "$2" >"$(node_dir)/import.log" 2>&1 || { cat "$(node_dir)/import.log" >&2; die "node: importing $2 failed"; }
    log "node: imported $2"
    ;;
  *) die "usage: $0 up [iceberg] [postgres] [kube]|kafka|down [node]|status|crash-restart NAME SECONDS|tools|duckdb [core]|import IMAGE.tar" ;;
esac
