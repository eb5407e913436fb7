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
DEST="${MONITORING_DIR:-$HOME/monitoring}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
METRICS="$RAY_TMP/session_latest/metrics"

if [ ! -f "$METRICS/prometheus/prometheus.yml" ]; then
    echo "error: $METRICS/prometheus/prometheus.yml not found: start the Ray head (with the dashboard) first" >&2
    exit 1
fi
mkdir -p "$DEST/prometheus" "$DEST/grafana" "$DEST/prometheus-data" "$DEST/grafana-data"

if [ ! -x "$DEST/prometheus/prometheus" ]; then
    curl -fsSL "https://github.com/prometheus/prometheus/releases/download/v${PROMETHEUS_VERSION}/prometheus-${PROMETHEUS_VERSION}.linux-amd64.tar.gz" \
        | tar xz --strip-components=1 -C "$DEST/prometheus"
fi
if [ ! -x "$DEST/grafana/bin/grafana" ]; then
    curl -fsSL "https://dl.grafana.com/oss/release/grafana-${GRAFANA_VERSION}.linux-amd64.tar.gz" \
        | tar xz --strip-components=1 -C "$DEST/grafana"
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
