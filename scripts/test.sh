#!/usr/bin/env bash
# README command 2: run every test. Starts what the tests need (the single-broker Kafka,
# PostgreSQL and the 3-broker cluster for fault tests) when it is not running, then runs
# the whole workspace's tests. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_disk_space
ensure_build_deps
ensure_text_model
ensure_image_model
deploy/local/stack.sh up
deploy/local/stack.sh up --cluster
eval "$(deploy/local/stack.sh env)"
# Tests make private topics (it-*, cli-*, fault-*); drop earlier runs' leftovers so the
# long-lived local brokers do not pile up partitions.
cargo build -q -p shopstream
for p in it- cli-; do "$CARGO_TARGET_DIR/debug/shopstream" topics delete --prefix "$p" >/dev/null; done
"$CARGO_TARGET_DIR/debug/shopstream" --brokers "$SHOPSTREAM_TEST_CLUSTER_BROKERS" topics delete --prefix fault- >/dev/null
export DATABASE_URL=$SHOPSTREAM_DATABASE_URL  # #[sqlx::test] makes a database per test from it
cargo test --workspace --locked "$@"
