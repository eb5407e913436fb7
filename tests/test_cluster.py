"""Cluster configs, dashboards and telemetry: the files in cluster/ are valid, consistent with the
pins in pyproject.toml, secure by default, and name entry points and metrics that exist."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
LAUNCHER = CLUSTER / "aws-gpu.yaml"
KUBERAY = sorted((CLUSTER / "kuberay").glob("*.yaml"))
RUNTIME_ENV = CLUSTER / "runtime_env.yaml"
DASHBOARD = CLUSTER / "grafana" / "diod_ray.json"
# Python of the cluster image: the interpreter the project is developed and tested on (3.11).
IMAGE_PYTHON_TAG = "py311"


def _pins() -> dict[str, str]:
    """pyproject.toml dependencies as {name (with extras stripped): exact version}."""
    # a regex, not tomllib: the project supports Python 3.10, which has no tomllib
    text = (REPO / "pyproject.toml").read_text()
    block = re.search(r"(?ms)^\[project\].*?^dependencies\s*=\s*\[(.*?)^\]", text)
    assert block, "pyproject.toml: no [project] dependencies"
    deps = re.findall(r'^\s*"([^"]+)"', block.group(1), re.M)
    pins = {}
    for dep in deps:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*==\s*([^\s;]+)\s*", dep)
        assert m, f"pyproject.toml: dependency {dep!r} is not pinned with =="
        pins[m.group(1).lower()] = m.group(3)
    return pins


def _ray_pin() -> str:
    return _pins()["ray"]


def _expected_image() -> str:
    return f"rayproject/ray:{_ray_pin()}-{IMAGE_PYTHON_TAG}-gpu"


def _pip_pins_without_ray() -> set[str]:
    return {f"{name}=={version}" for name, version in _pins().items() if name != "ray"}


def _normalise_req(req: str) -> str:
    name, version = req.split("==")
    return f"{name.strip().lower()}=={version.strip()}"


# ------------------------------------------------------------------------------------------
# Cluster launcher
# ------------------------------------------------------------------------------------------


def _launcher() -> dict:
    return yaml.safe_load(LAUNCHER.read_text())


def test_launcher_config_validates_against_rays_schema():
    import jsonschema
    import ray
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema_path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    schema = json.loads(schema_path.read_text())
    cfg = _launcher()
    jsonschema.validate(cfg, schema)
    # What `ray up` does: fill the provider's defaults, then validate again.
    validate_config(prepare_config(copy.deepcopy(cfg)))

    # The schema is strict enough to catch a typo (so the check above means something).
    bad = copy.deepcopy(cfg)
    bad["available_node_types"]["ray.worker.gpu"]["max_worker"] = 8
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_launcher_config_is_secure_and_matches_the_pins():
    cfg = _launcher()
    assert cfg["docker"]["image"] == _expected_image()
    for key in ("head_image", "worker_image"):
        assert key not in cfg["docker"], f"{key} would bypass the pinned image"

    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "the head must not run training or data tasks"
    assert head["resources"].get("TRAIN_DRIVER_RESOURCE", 0) > 0
    gpu_types = [
        t
        for t in types.values()
        if re.match(r"(g4dn|g5|g6|g6e|p3|p4d|p4de|p5)\.", t["node_config"]["InstanceType"])
    ]
    assert gpu_types and all(t["max_workers"] > 0 for t in gpu_types)
    for name, t in types.items():
        assert "IamInstanceProfile" in t["node_config"], f"{name}: S3 via an instance profile"

    # Token auth in the container env and in every ray start; dashboard on loopback only.
    assert "--env RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]
    starts = cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
    for cmd in (c for c in starts if "ray start" in c):
        assert "RAY_AUTH_MODE=token" in cmd, cmd
    head_start = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in LAUNCHER.read_text()
    for var in ("RAY_GRAFANA_HOST", "RAY_PROMETHEUS_HOST", "RAY_GRAFANA_IFRAME_HOST"):
        assert f"{var}=" in head_start
    # The local token file is mounted on every node; the package is installed from the mount.
    mounts = cfg["file_mounts"]
    assert mounts.get("~/.ray/auth_token") == "~/.ray/auth_token"
    repo_mount = next(remote for remote, local in mounts.items() if local == ".")
    assert any("pip install" in c and repo_mount in c for c in cfg["setup_commands"])


# ------------------------------------------------------------------------------------------
# KubeRay
# ------------------------------------------------------------------------------------------


def _ray_cluster_specs(doc: dict) -> list[dict]:
    if doc["kind"] == "RayCluster":
        return [doc["spec"]]
    if doc["kind"] == "RayJob":
        return [doc["spec"]["rayClusterSpec"]]
    return []


def _pod_specs(spec: dict) -> list[tuple[str, dict]]:
    pods = [("head", spec["headGroupSpec"]["template"]["spec"])]
    pods += [(g["groupName"], g["template"]["spec"]) for g in spec["workerGroupSpecs"]]
    return pods


def test_kuberay_manifests_parse_and_match_the_pins():
    names = {p.name for p in KUBERAY}
    assert {"raycluster.yaml", "rayjob-train.yaml", "rayjob-sweep.yaml"} <= names
    for path in KUBERAY:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        specs = [s for d in docs for s in _ray_cluster_specs(d)]
        assert specs, f"{path.name}: no RayCluster spec"
        for doc in docs:
            assert doc["apiVersion"] == "ray.io/v1", path.name
            assert doc["kind"] not in ("Ingress", "Route"), f"{path.name}: no public ingress"
        for spec in specs:
            assert spec["rayVersion"] == _ray_pin(), path.name
            assert spec["authOptions"] == {"mode": "token"}, path.name
            assert spec["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"
            assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
            gpu_groups = 0
            for group, pod in _pod_specs(spec):
                for c in pod["containers"]:
                    where = f"{path.name}:{group}:{c['name']}"
                    assert c["image"] == _expected_image(), where
                    from_secret = any("secretRef" in e for e in c.get("envFrom", [])) or any(
                        "secretKeyRef" in e.get("valueFrom", {}) for e in c.get("env", [])
                    )
                    assert from_secret or pod.get("serviceAccountName"), f"{where}: S3 access"
                    for e in c.get("env", []):
                        assert not (e["name"].startswith("AWS_") and "value" in e), (
                            f"{where}: {e['name']} must come from a Secret"
                        )
                    limits = c.get("resources", {}).get("limits", {})
                    gpu_groups += int(limits.get("nvidia.com/gpu", 0) > 0)
            assert gpu_groups >= 1, f"{path.name}: no GPU worker group"


def test_rayjobs_clean_up_and_carry_the_pinned_env():
    for name in ("rayjob-train.yaml", "rayjob-sweep.yaml"):
        (job,) = [d for d in yaml.safe_load_all((CLUSTER / "kuberay" / name).read_text()) if d]
        spec = job["spec"]
        assert spec["shutdownAfterJobFinishes"] is True, name
        assert isinstance(spec["ttlSecondsAfterFinished"], int)
        assert spec["ttlSecondsAfterFinished"] > 0
        env = yaml.safe_load(spec["runtimeEnvYAML"])
        pip = {_normalise_req(r) for r in env["pip"]["packages"]}
        assert pip == _pip_pins_without_ray(), name
        assert env["working_dir"].startswith(("https://", "s3://")), name
    train = yaml.safe_load((CLUSTER / "kuberay" / "rayjob-train.yaml").read_text())
    entry = train["spec"]["entrypoint"]
    for part in ("-m diod_ray.train", "--preset tri-pd", "run.num_workers=8", "run.use_gpu=true"):
        assert part in entry
    assert re.search(r"data\.uri=s3://", entry) and re.search(r"run\.storage_path=s3://", entry)


def test_runtime_env_is_valid_pinned_and_secret_free():
    from ray.runtime_env import RuntimeEnv

    env = yaml.safe_load(RUNTIME_ENV.read_text())
    RuntimeEnv(**env)  # Ray's own validation of the fields
    assert {_normalise_req(r) for r in env["pip"]["packages"]} == _pip_pins_without_ray()
    for key in env.get("env_vars", {}):
        assert not re.search(r"SECRET|TOKEN|PASSWORD|ACCESS_KEY", key, re.I), key


# ------------------------------------------------------------------------------------------
# Entry points named in cluster/
# ------------------------------------------------------------------------------------------


def _entrypoints() -> dict[tuple[str, str], set[str]]:
    """{("module" | "script", target): flags used with it} from every file under cluster/."""
    found: dict[tuple[str, str], set[str]] = {}
    texts: list[str] = []
    for path in sorted(CLUSTER.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix in (".yaml", ".yml"):  # folded YAML scalars become one line
            texts += [s for d in yaml.safe_load_all(path.read_text()) for s in _strings(d)]
        elif path.suffix in (".md", ".sh"):
            texts.append(re.sub(r"\\\n\s*", " ", path.read_text()))  # join continuations
    for text in texts:
        for m in re.finditer(r"python(?:3(?:\.\d+)?)? -m (diod_ray[\w.]*)([^\n`'\"]*)", text):
            found.setdefault(("module", m.group(1)), set()).update(
                re.findall(r"(--[a-z][\w-]*)", m.group(2))
            )
        for m in re.finditer(
            r"python(?:3(?:\.\d+)?)? ((?:[\w.-]+/)*[\w.-]+\.py)([^\n`'\"]*)", text
        ):
            found.setdefault(("script", m.group(1)), set()).update(
                re.findall(r"(--[a-z][\w-]*)", m.group(2))
            )
    return found


def _strings(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


ENTRYPOINTS = _entrypoints()


def test_cluster_files_name_the_training_and_sweep_entrypoints():
    assert ("module", "diod_ray.train") in ENTRYPOINTS
    assert ("script", "sweeps/alpha_burnin.py") in ENTRYPOINTS


@pytest.mark.parametrize("kind,target", sorted(ENTRYPOINTS), ids=lambda v: str(v))
def test_entrypoint_exists_and_answers_help(kind, target):
    if kind == "module":
        rel = Path(*target.split("."))
        assert (REPO / rel.with_suffix(".py")).is_file() or (
            REPO / rel / "__main__.py"
        ).is_file(), f"cluster/ names `python -m {target}` but it does not exist"
        cmd = [sys.executable, "-m", target, "--help"]
    else:
        assert (REPO / target).is_file(), f"cluster/ names `python {target}` but it does not exist"
        cmd = [sys.executable, target, "--help"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd[1:])} failed:\n{proc.stdout}\n{proc.stderr}"
    assert "usage" in proc.stdout.lower()
    for flag in sorted(ENTRYPOINTS[(kind, target)]):
        assert flag in proc.stdout, f"{target}: cluster/ passes {flag}, --help does not list it"


# ------------------------------------------------------------------------------------------
# Grafana dashboard and telemetry
# ------------------------------------------------------------------------------------------


def test_grafana_dashboard_queries_exactly_the_exported_metrics():
    from diod_ray.telemetry import METRIC_NAMES, METRICS

    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"

    queried: set[str] = set()
    for panel in dash["panels"]:
        assert panel["type"] == "timeseries", panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            names = set(re.findall(r"\b(ray_\w+)\b", target["expr"]))
            assert names, f"{panel['title']}: query names no metric"
            unknown = names - set(METRIC_NAMES)
            assert not unknown, f"{panel['title']}: {unknown} not in telemetry.METRIC_NAMES"
            queried |= names
    assert queried == set(METRIC_NAMES), f"no panel for {set(METRIC_NAMES) - queried}"
    for spec in METRICS:  # counters are shown as rates, gauges as values
        exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
        expr = next(e for e in exprs if spec.prometheus_name in e)
        assert ("rate(" in expr) == (spec.kind == "counter"), expr


def test_telemetry_records_locally_without_ray():
    code = textwrap.dedent(
        """
        import json, sys
        from diod_ray.telemetry import Telemetry
        t = Telemetry("unit")
        t.record(step=1, phase=0, loss=0.5, clips_per_s=3.0, data_wait_s=0.01)
        t.record(step=2, phase=1, candidates_kept=5, candidates_dropped=2,
                 motion_kept_share=0.8, teacher_student_agreement=0.7)
        t.record(step=3, phase=1, candidates_kept=1, loss=0.25)
        print(json.dumps({"snap": t.snapshot(), "exporting": t.exporting,
                          "records": t.records, "ray_imported": "ray" in sys.modules}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["exporting"] is False and out["ray_imported"] is False and out["records"] == 3
    assert out["snap"] == {
        "ray_diod_step": 3.0,
        "ray_diod_phase": 1.0,
        "ray_diod_loss": 0.25,
        "ray_diod_clips_per_second": 3.0,
        "ray_diod_data_wait_seconds": 0.01,
        "ray_diod_teacher_candidates_kept_total": 6.0,
        "ray_diod_teacher_candidates_dropped_total": 2.0,
        "ray_diod_motion_masks_kept_share": 0.8,
        "ray_diod_teacher_student_agreement": 0.7,
    }


def test_telemetry_rejects_bad_values():
    from diod_ray.telemetry import Telemetry

    t = Telemetry("bad-values")
    with pytest.raises(ValueError, match="phase"):
        t.record(step=1, phase=2)
    with pytest.raises(ValueError, match="candidates_kept"):
        t.record(step=1, phase=1, candidates_kept=-1)
    with pytest.raises(ValueError, match="run_name"):
        Telemetry("")
    assert t.records == 0 and t.snapshot() == {}


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def _series(text: str, name: str, run: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") and f'run="{run}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_telemetry_exports_through_ray_metrics(ray_session):
    from diod_ray.telemetry import METRIC_NAMES, Telemetry

    run = f"t-{uuid.uuid4().hex[:8]}"
    t = Telemetry(run)
    t.record(step=6, phase=0, loss=1.5, clips_per_s=12.0, data_wait_s=0.02)
    t.record(
        step=7,
        phase=1,
        candidates_kept=4,
        candidates_dropped=3,
        motion_kept_share=0.6,
        teacher_student_agreement=0.9,
    )
    t.record(step=7, phase=1, candidates_kept=1)
    assert t.exporting

    node = ray_session._private.worker.global_worker.node
    url = f"http://{node.node_ip_address}:{node.metrics_export_port}/metrics"
    expected = {
        "ray_diod_step": 7.0,
        "ray_diod_phase": 1.0,
        "ray_diod_loss": 1.5,
        "ray_diod_clips_per_second": 12.0,
        "ray_diod_data_wait_seconds": 0.02,
        "ray_diod_teacher_candidates_kept_total": 5.0,
        "ray_diod_teacher_candidates_dropped_total": 3.0,
        "ray_diod_motion_masks_kept_share": 0.6,
        "ray_diod_teacher_student_agreement": 0.9,
    }
    assert set(expected) == set(METRIC_NAMES)
    deadline = time.monotonic() + 60  # Ray exports application metrics every ~10 s
    seen: dict[str, float | None] = {}
    while time.monotonic() < deadline:
        text = _scrape(url)
        seen = {name: _series(text, name, run) for name in METRIC_NAMES}
        if all(v is not None for v in seen.values()):
            break
        time.sleep(2)
    assert seen == pytest.approx(expected), f"scraped from {url}: {seen}"
