#!/usr/bin/env bash
# README command 1: bring up the local stack (Kafka + PostgreSQL) and run the platform
# (`shopstream up`) in the foreground. Ctrl-C stops the platform; the stack keeps running
# (`deploy/local/stack.sh down` stops it). Extra arguments go to `shopstream up`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_disk_space
ensure_build_deps
ensure_text_model
ensure_image_model
deploy/local/stack.sh up
eval "$(deploy/local/stack.sh env)"
cargo build -p shopstream
exec "$CARGO_TARGET_DIR/debug/shopstream" up "$@"
