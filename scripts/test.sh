#!/usr/bin/env bash
# README command 2: run every test. Starts what the tests need (the single-broker Kafka,
# PostgreSQL and the 3-broker cluster for fault tests) when it is not running, then runs
# the whole workspace's tests. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_build_deps
deploy/local/stack.sh up
deploy/local/stack.sh up --cluster
eval "$(deploy/local/stack.sh env)"
export DATABASE_URL=$SHOPSTREAM_DATABASE_URL  # #[sqlx::test] makes a database per test from it
cargo test --workspace --locked "$@"
