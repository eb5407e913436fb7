#!/usr/bin/env bash
# Prometheus + Grafana for a running Ray head, both bound to 127.0.0.1, provisioned with the
# configs and dashboards Ray writes under <ray temp dir>/session_latest/metrics/ (Ray's default,
# Train and Data dashboards) plus our cluster/grafana/diod_ray.json.
#
# On the launcher cluster's head (the repository is mounted at /home/ray/diod_ray):
#   ray exec cluster/aws-gpu.yaml 'bash /home/ray/diod_ray/cluster/monitoring.sh'
#   ray attach cluster/aws-gpu.yaml -p 3000        # then http://localhost:3000 (and the
#                                                  # dashboard's Metrics tab embeds it)
# Locally, after `ray start --head` (or while a script holds ray.init()):
#   bash cluster/monitoring.sh
#
# Start the Ray head with RAY_GRAFANA_HOST=http://127.0.0.1:3000,
# RAY_PROMETHEUS_HOST=http://127.0.0.1:9090 and RAY_GRAFANA_IFRAME_HOST=http://localhost:3000 so
# that the dashboard embeds the panels (cluster/aws-gpu.yaml does). Stop with:
#   kill "$(cat ~/monitoring/prometheus.pid)" "$(cat ~/monitoring/grafana.pid)"
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-2.53.3}"
GRAFANA_VERSION="${GRAFANA_VERSION:-11.3.0}"
RAY_TMP="${RAY_TMP:-/tmp/ray}"
PROMETHEUS_URL_BASE="${PROMETHEUS_URL_BASE:-https://github.com/prometheus/prometheus/releases/download}"
GRAFANA_URL_BASE="${GRAFANA_URL_BASE:-https://dl.grafana.com/oss/release}"
DEST="${MONITORING_DIR:-$HOME/monitoring}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
METRICS="$RAY_TMP/session_latest/metrics"

if [ ! -f "$METRICS/prometheus/prometheus.yml" ]; then
    echo "error: $METRICS/prometheus/prometheus.yml not found: start the Ray head (with the dashboard) first" >&2
    exit 1
fi
mkdir -p "$DEST/prometheus" "$DEST/grafana" "$DEST/prometheus-data" "$DEST/grafana-data"

# Each tarball is downloaded to a file and checked with `sha256sum -c` before it is unpacked,
# against the sha256 pinned here when there is one (PROMETHEUS_SHA256 / GRAFANA_SHA256, or the
# environment), else against the checksum file the project publishes with the release
# (Prometheus: sha256sums.txt of the GitHub release; Grafana: <tarball>.sha256), which catches a
# truncated or altered download but trusts that site; the script then prints the line to pin.
# A mismatch stops the script and nothing is unpacked.
PROMETHEUS_SHA256="${PROMETHEUS_SHA256:-}"
GRAFANA_SHA256="${GRAFANA_SHA256:-}"

# fetch_verified URL PINNED_SHA256 PUBLISHED_SUMS_URL -> path of the verified tarball
fetch_verified() {
    local url="$1" pinned="$2" sums_url="$3" name expected
    name="$(basename "$url")"
    curl -fsSL -o "$DEST/$name" "$url"
    if [ -n "$pinned" ]; then
        expected="$pinned"
    else
        # "<sha256>  <file>" lines (Prometheus) or a file holding the bare sha256 (Grafana)
        expected="$(curl -fsSL "$sums_url" | awk -v f="$name" '$2 == f || NF == 1 {print $1; exit}')"
        if [ -z "$expected" ]; then
            echo "error: no sha256 for $name in $sums_url" >&2
            rm -f "$DEST/$name"
            exit 1
        fi
        echo "note: $name checked against the published $sums_url; pin it: $expected" >&2
    fi
    if ! (cd "$DEST" && echo "$expected  $name" | sha256sum -c --quiet -); then
        echo "error: $name does not match sha256 $expected; not unpacked" >&2
        rm -f "$DEST/$name"
        exit 1
    fi
    echo "$DEST/$name"
}

if [ ! -x "$DEST/prometheus/prometheus" ]; then
    base="$PROMETHEUS_URL_BASE/v${PROMETHEUS_VERSION}"
    tarball="$(fetch_verified "$base/prometheus-${PROMETHEUS_VERSION}.linux-amd64.tar.gz" \
        "$PROMETHEUS_SHA256" "$base/sha256sums.txt")"
    tar xzf "$tarball" --strip-components=1 -C "$DEST/prometheus" && rm -f "$tarball"
fi
if [ ! -x "$DEST/grafana/bin/grafana" ]; then
    url="$GRAFANA_URL_BASE/grafana-${GRAFANA_VERSION}.linux-amd64.tar.gz"
    tarball="$(fetch_verified "$url" "$GRAFANA_SHA256" "$url.sha256")"
    tar xzf "$tarball" --strip-components=1 -C "$DEST/grafana" && rm -f "$tarball"
fi

# Our dashboard next to Ray's, picked up by Ray's dashboard provisioning.
cp "$HERE/grafana/diod_ray.json" "$METRICS/grafana/dashboards/diod_ray.json"

nohup "$DEST/prometheus/prometheus" \
    --config.file="$METRICS/prometheus/prometheus.yml" \
    --web.listen-address=127.0.0.1:9090 \
    --storage.tsdb.path="$DEST/prometheus-data" \
    >"$DEST/prometheus.log" 2>&1 &
echo $! >"$DEST/prometheus.pid"

# Ray's grafana.ini turns on embedding and anonymous read-only viewers; keep it on loopback.
GF_SERVER_HTTP_ADDR=127.0.0.1 GF_SERVER_HTTP_PORT=3000 GF_PATHS_DATA="$DEST/grafana-data" \
    nohup "$DEST/grafana/bin/grafana" server \
    --homepath "$DEST/grafana" \
    --config "$METRICS/grafana/grafana.ini" \
    >"$DEST/grafana.log" 2>&1 &
echo $! >"$DEST/grafana.pid"

echo "Prometheus: http://127.0.0.1:9090   Grafana: http://127.0.0.1:3000 (dashboard 'diod_ray training')"
