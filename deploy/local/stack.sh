#!/usr/bin/env bash
# The local stack: a real Apache Kafka 4 broker in KRaft mode (jars from Maven Central,
# cached outside the clone) and a private PostgreSQL cluster (Debian's postgresql package,
# initdb into our own data dir, loopback only). No system services, no Docker.
#
#   stack.sh up|down|status|reset [--cluster]   single broker (default) or 3-broker cluster
#   stack.sh cluster-kill N | cluster-start N   SIGKILL / restart cluster node N (1-3)
#   stack.sh env                                export lines for SHOPSTREAM_* variables
#
# Every verb is idempotent. `up` starts only what is not running and waits until healthy.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_VERSION=4.1.1
CACHE=${SHOPSTREAM_CACHE:-$HOME/.cache/shopstream}
STATE=${SHOPSTREAM_STATE:-$HOME/.local/share/shopstream/stack}
LIBS=$CACHE/kafka-$KAFKA_VERSION/libs
KAFKA_PORT=${SHOPSTREAM_KAFKA_PORT:-9092}
PG_PORT=${SHOPSTREAM_PG_PORT:-55432}
CLUSTER_PORTS=(9192 9193 9194)
CLUSTER_CTRL_PORTS=(9292 9293 9294)
HEALTH_TIMEOUT=${SHOPSTREAM_STACK_TIMEOUT:-120}
# PostgreSQL refuses to run as root, and root's $HOME is closed to other users, so as root
# the cluster runs as the `postgres` user (made by the Debian package) under /var/lib.
if [ "$(id -u)" = 0 ]; then
  PG_DIR=${SHOPSTREAM_PG_DIR:-/var/lib/shopstream/pg}
  PG_USER=postgres
else
  PG_DIR=${SHOPSTREAM_PG_DIR:-$STATE/pg}
  PG_USER=$(id -un)
fi

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- packages
pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

ensure_packages() {
  local missing=()
  pg_bin >/dev/null || missing+=(postgresql)
  command -v mvn >/dev/null || missing+=(maven)
  command -v kcat >/dev/null || missing+=(kcat)
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing packages ${missing[*]}: install them (apt-get install ${missing[*]})"
  log "installing missing packages: ${missing[*]}"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# ---------------------------------------------------------------- processes
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop_pids() { # pidfile... : SIGTERM all at once (a quorum shuts down together), then wait
  local f pid i alive pids=()
  for f in "$@"; do
    if pid_alive "$f"; then
      pid=$(cat "$f"); pids+=("$pid")
      log "stopping pid $pid ($f)"
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for i in $(seq 1 60); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.5
  done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid did not stop in 30 s, killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -f "$@"
}

# ---------------------------------------------------------------- kafka
fetch_kafka() {
  [ -f "$LIBS/.complete" ] && return 0
  log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIBS (once)"
  local tmp=$LIBS.tmp
  rm -rf "$tmp"
  mkdir -p "$tmp"
  mvn -q -B -Dstyle.color=never -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
      -Dkafka.version="$KAFKA_VERSION" -DincludeScope=runtime -DoutputDirectory="$tmp" \
    || die "mvn could not fetch the Kafka jars (see the output above)"
  ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null || die "kafka_2.13-$KAFKA_VERSION.jar missing after fetch"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  touch "$LIBS/.complete"
}

kafka_java() { # main-class args...
  java -Xms128m -Xmx256m -cp "$LIBS/*" -Dlog4j2.configurationFile="$HERE/kafka/log4j2-tools.properties" "$@"
}

# node_config dir node_id port ctrl_port voters replication
node_config() {
  local dir=$1 id=$2 port=$3 ctrl=$4 voters=$5 rf=$6 min_isr
  min_isr=$(( rf > 1 ? 2 : 1 ))
  mkdir -p "$dir/data" "$dir/logs"
  cat > "$dir/server.properties" <<EOF
# Written by deploy/local/stack.sh; edits are overwritten.
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctrl
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=3
default.replication.factor=$rf
min.insync.replicas=$min_isr
auto.create.topics.enable=false
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
log.retention.check.interval.ms=60000
EOF
}

# node_start dir name port
node_start() {
  local dir=$1 name=$2 port=$3
  if pid_alive "$dir/kafka.pid"; then
    log "$name already running (pid $(cat "$dir/kafka.pid"))"
    return 0
  fi
  if port_open "$port"; then
    die "port $port is taken by another process; stop it or set SHOPSTREAM_KAFKA_PORT"
  fi
  if [ ! -f "$dir/data/meta.properties" ]; then
    [ -f "$dir/cluster.id" ] || head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$dir/cluster.id"
    log "formatting $name storage"
    kafka_java kafka.tools.StorageTool format --ignore-formatted \
        -t "$(cat "$dir/cluster.id")" -c "$dir/server.properties" >"$dir/logs/format.log" 2>&1 \
      || { cat "$dir/logs/format.log" >&2; die "formatting $name storage failed"; }
  fi
  log "starting $name on 127.0.0.1:$port"
  (
    cd "$dir"
    export KAFKA_HEAP_OPTS=""
    nohup java -Xms256m -Xmx${KAFKA_HEAP:-768m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -Djava.awt.headless=true -Dkafka.logs.dir="$dir/logs" \
      -Dlog4j2.configurationFile="$HERE/kafka/log4j2.properties" \
      -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" >"$dir/logs/stdout.log" 2>&1 &
    echo $! > "$dir/kafka.pid"
  )
}

kafka_healthy() { # port
  port_open "$1" || return 1
  if command -v kcat >/dev/null; then
    kcat -b "127.0.0.1:$1" -L -m 3 -t __shopstream_probe >/dev/null 2>&1 || \
      kcat -b "127.0.0.1:$1" -L -m 3 2>/dev/null | grep -q "brokers:"
  fi
}

wait_kafka() { # dir name port
  local dir=$1 name=$2 port=$3 t=0
  until kafka_healthy "$port"; do
    if ! pid_alive "$dir/kafka.pid"; then
      tail -n 30 "$dir/logs/stdout.log" "$dir/logs/server.log" 2>/dev/null >&2 || true
      die "$name exited during start-up (logs above, full logs in $dir/logs)"
    fi
    [ $t -ge "$HEALTH_TIMEOUT" ] && { tail -n 30 "$dir/logs/server.log" >&2 || true; die "$name not healthy after ${HEALTH_TIMEOUT}s"; }
    sleep 1; t=$((t + 1))
  done
  log "$name healthy on 127.0.0.1:$port"
}

single_dir() { echo "$STATE/kafka"; }
cluster_dir() { echo "$STATE/kafka-cluster/node$1"; }
cluster_voters() { echo "1@127.0.0.1:${CLUSTER_CTRL_PORTS[0]},2@127.0.0.1:${CLUSTER_CTRL_PORTS[1]},3@127.0.0.1:${CLUSTER_CTRL_PORTS[2]}"; }

kafka_up() {
  local dir; dir=$(single_dir)
  node_config "$dir" 1 "$KAFKA_PORT" $((KAFKA_PORT + 1)) "1@127.0.0.1:$((KAFKA_PORT + 1))" 1
  node_start "$dir" kafka "$KAFKA_PORT"
  wait_kafka "$dir" kafka "$KAFKA_PORT"
}

cluster_node_up() { # n (no wait)
  local n=$1 dir; dir=$(cluster_dir "$n")
  node_config "$dir" "$n" "${CLUSTER_PORTS[$((n-1))]}" "${CLUSTER_CTRL_PORTS[$((n-1))]}" "$(cluster_voters)" 3
  # All nodes of a cluster share one cluster id.
  mkdir -p "$STATE/kafka-cluster"
  [ -f "$STATE/kafka-cluster/cluster.id" ] || head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$STATE/kafka-cluster/cluster.id"
  cp "$STATE/kafka-cluster/cluster.id" "$dir/cluster.id"
  KAFKA_HEAP=512m node_start "$dir" "cluster node $n" "${CLUSTER_PORTS[$((n-1))]}"
}

cluster_up() {
  local n
  for n in 1 2 3; do cluster_node_up "$n"; done
  # A quorum needs two voters up before any of them is healthy: start all, then wait.
  for n in 1 2 3; do wait_kafka "$(cluster_dir "$n")" "cluster node $n" "${CLUSTER_PORTS[$((n-1))]}"; done
}

# ---------------------------------------------------------------- postgres
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi; }

pg_up() {
  local bin; bin=$(pg_bin) || die "PostgreSQL binaries not found under /usr/lib/postgresql"
  mkdir -p "$PG_DIR"
  [ "$(id -u)" = 0 ] && chown "$PG_USER" "$PG_DIR" "$(dirname "$PG_DIR")" 2>/dev/null || true
  if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
    log "initialising PostgreSQL cluster in $PG_DIR/data"
    as_pg "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
      >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
  fi
  if as_pg "$bin/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
    log "postgres already running"
  else
    port_open "$PG_PORT" && die "port $PG_PORT is taken by another process; set SHOPSTREAM_PG_PORT"
    log "starting postgres on 127.0.0.1:$PG_PORT"
    as_pg "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t "$HEALTH_TIMEOUT" start \
      -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=256MB" \
      >/dev/null || { tail -n 30 "$PG_DIR/postgres.log" >&2; die "postgres did not start"; }
  fi
  local t=0
  until "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; do
    [ $t -ge "$HEALTH_TIMEOUT" ] && die "postgres not ready after ${HEALTH_TIMEOUT}s"
    sleep 1; t=$((t + 1))
  done
  psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || die "creating role/database shopstream failed"
SELECT 'CREATE ROLE shopstream LOGIN SUPERUSER PASSWORD ''shopstream'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shopstream') \gexec
SELECT 'CREATE DATABASE shopstream OWNER shopstream'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'shopstream') \gexec
SQL
  log "postgres healthy: postgres://shopstream:shopstream@127.0.0.1:$PG_PORT/shopstream"
}

pg_down() {
  local bin; bin=$(pg_bin) || return 0
  [ -f "$PG_DIR/data/PG_VERSION" ] || return 0
  if as_pg "$bin/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
    log "stopping postgres"
    as_pg "$bin/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null
  fi
}

# ---------------------------------------------------------------- verbs
status_line() { printf '%-16s %-10s %s\n' "$1" "$2" "$3"; }

status() {
  local ok=0 dir n bin
  if [ "$CLUSTER" = 1 ]; then
    for n in 1 2 3; do
      dir=$(cluster_dir "$n")
      if pid_alive "$dir/kafka.pid" && kafka_healthy "${CLUSTER_PORTS[$((n-1))]}"; then
        status_line "cluster node $n" healthy "pid $(cat "$dir/kafka.pid"), 127.0.0.1:${CLUSTER_PORTS[$((n-1))]}"
      else status_line "cluster node $n" down "127.0.0.1:${CLUSTER_PORTS[$((n-1))]}"; ok=1; fi
    done
    return $ok
  fi
  dir=$(single_dir)
  if pid_alive "$dir/kafka.pid" && kafka_healthy "$KAFKA_PORT"; then
    status_line kafka healthy "pid $(cat "$dir/kafka.pid"), 127.0.0.1:$KAFKA_PORT, Apache Kafka $KAFKA_VERSION (KRaft)"
  else status_line kafka down "127.0.0.1:$KAFKA_PORT"; ok=1; fi
  bin=$(pg_bin 2>/dev/null || true)
  if [ -n "$bin" ] && "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
    status_line postgres healthy "127.0.0.1:$PG_PORT, data $PG_DIR/data"
  else status_line postgres down "127.0.0.1:$PG_PORT"; ok=1; fi
  return $ok
}

up() {
  ensure_packages
  fetch_kafka
  if [ "$CLUSTER" = 1 ]; then cluster_up; else pg_up; kafka_up; fi
}

down() {
  if [ "$CLUSTER" = 1 ]; then
    stop_pids "$(cluster_dir 1)/kafka.pid" "$(cluster_dir 2)/kafka.pid" "$(cluster_dir 3)/kafka.pid"
  else
    stop_pids "$(single_dir)/kafka.pid"
    pg_down
  fi
}

reset() {
  down
  if [ "$CLUSTER" = 1 ]; then
    log "deleting cluster data"; rm -rf "$STATE/kafka-cluster"
  else
    log "deleting kafka and postgres data"; rm -rf "$(single_dir)" "$PG_DIR/data"
  fi
  up
}

print_env() {
  echo "export SHOPSTREAM_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
  # Through PostgreSQL's Unix socket (in $PG_DIR, the host percent-encoded): on one machine
  # it costs less per round trip than TCP on loopback. TCP on 127.0.0.1:$PG_PORT works too.
  echo "export SHOPSTREAM_DATABASE_URL=postgres://shopstream:shopstream@${PG_DIR//\//%2F}:$PG_PORT/shopstream"
  echo "export SHOPSTREAM_TEST_CLUSTER_BROKERS=127.0.0.1:${CLUSTER_PORTS[0]},127.0.0.1:${CLUSTER_PORTS[1]},127.0.0.1:${CLUSTER_PORTS[2]}"
}

usage() { sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

verb=${1:-}
shift || true
CLUSTER=0
node=""
for a in "$@"; do
  case $a in
    --cluster) CLUSTER=1 ;;
    [1-3]) node=$a ;;
    *) usage >&2; die "unknown argument $a" ;;
  esac
done
case $verb in
  up) up ;;
  down) down ;;
  status) status ;;
  reset) reset ;;
  env) print_env ;;
  cluster-kill)
    [ -n "$node" ] || die "cluster-kill needs a node number 1-3"
    f="$(cluster_dir "$node")/kafka.pid"
    pid_alive "$f" || die "cluster node $node is not running"
    log "SIGKILL cluster node $node (pid $(cat "$f"))"; kill -KILL "$(cat "$f")"; rm -f "$f" ;;
  cluster-start)
    [ -n "$node" ] || die "cluster-start needs a node number 1-3"
    cluster_node_up "$node"
    wait_kafka "$(cluster_dir "$node")" "cluster node $node" "${CLUSTER_PORTS[$((node-1))]}" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
