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

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
LAUNCHER = CLUSTER / "aws-gpu.yaml"
KUBERAY = sorted((CLUSTER / "kuberay").glob("*.yaml"))
RUNTIME_ENV = CLUSTER / "runtime_env.yaml"
DASHBOARD = CLUSTER / "grafana" / "diod_ray.json"
DOCKERFILE = CLUSTER / "Dockerfile"
# Python of the cluster image: the interpreter the project is developed and tested on (3.11), and
# the CUDA Ray builds its Python 3.11 GPU images on (12.8.1; tags {ray}-py{XY}-cu{XYZ}).
IMAGE_PYTHON_TAG = "py311"
IMAGE_CUDA_TAG = "cu128"
# The project image (cluster/Dockerfile) every cluster config runs; CHANGE-ME: the AWS account.
PROJECT_REPOSITORY = "CHANGE-ME.dkr.ecr.us-west-2.amazonaws.com/diod-ray"


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


def _project_version() -> str:
    m = re.search(r'(?m)^version\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text())
    assert m, "pyproject.toml: no version"
    return m.group(1)


def _base_image() -> str:
    return f"rayproject/ray:{_ray_pin()}-{IMAGE_PYTHON_TAG}-{IMAGE_CUDA_TAG}"


def _expected_image() -> str:
    """The project image: its tag names the package version and the base it was built on, so a
    new ray pin (or release) shows up as a stale tag in every cluster config."""
    tag = f"{_project_version()}-ray{_ray_pin()}-{IMAGE_PYTHON_TAG}-{IMAGE_CUDA_TAG}"
    return f"{PROJECT_REPOSITORY}:{tag}"


def _assert_no_install(env: dict, where: str) -> None:
    """Dependencies come from the image only: no per-job package lists."""
    for key in ("pip", "uv", "conda", "py_executable"):
        assert key not in env, f"{where}: runtime env installs packages ({key}); use the image"


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
    assert cfg["docker"]["pull_before_run"] is True
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
    # The local token file is mounted on every node; nothing is installed on a node (the image
    # has it all); the hosts log in to the image's registry with their instance profile.
    mounts = cfg["file_mounts"]
    assert mounts.get("~/.ray/auth_token") == "~/.ray/auth_token"
    commands = [
        c
        for key in ("setup_commands", "head_setup_commands", "worker_setup_commands")
        for c in cfg.get(key, [])
    ]
    assert not [c for c in commands if re.search(r"\b(pip|uv|conda)\b", c)], commands
    registry = _expected_image().split("/")[0]
    login = " ".join(cfg["initialization_commands"])
    assert "aws ecr get-login-password" in login and f"--password-stdin {registry}" in login


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
        if all(d["kind"] == "NetworkPolicy" for d in docs):  # networkpolicy.yaml (test_images)
            continue
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
                    # S3 keys as a mounted credentials file (or IRSA), never in the environment:
                    # Ray Tune copies AWS_* variables into every trial's runtime_env, which Ray
                    # logs (runtime_env_agent.log) and shows in the dashboard
                    secret_volumes = {
                        v["name"]
                        for v in pod.get("volumes", [])
                        if v.get("secret", {}).get("secretName") == "diod-ray-s3"
                    }
                    mounted = any(
                        m["name"] in secret_volumes and m["mountPath"] == "/home/ray/.aws"
                        for m in c.get("volumeMounts", [])
                    )
                    assert mounted or pod.get("serviceAccountName"), f"{where}: S3 access"
                    assert not c.get("envFrom"), f"{where}: no Secret as environment"
                    for e in c.get("env", []):  # an endpoint or region may be set here
                        assert not re.search(r"ACCESS_KEY|SECRET|TOKEN|PASSWORD", e["name"]), (
                            f"{where}: {e['name']} in the environment"
                        )
                    limits = c.get("resources", {}).get("limits", {})
                    gpu_groups += int(limits.get("nvidia.com/gpu", 0) > 0)
            assert gpu_groups >= 1, f"{path.name}: no GPU worker group"


def test_rayjobs_clean_up_and_install_nothing():
    for name in ("rayjob-train.yaml", "rayjob-sweep.yaml"):
        (job,) = [d for d in yaml.safe_load_all((CLUSTER / "kuberay" / name).read_text()) if d]
        spec = job["spec"]
        assert spec["shutdownAfterJobFinishes"] is True, name
        assert isinstance(spec["ttlSecondsAfterFinished"], int)
        assert spec["ttlSecondsAfterFinished"] > 0
        env = yaml.safe_load(spec["runtimeEnvYAML"])
        _assert_no_install(env, name)
        assert env["working_dir"].startswith(("https://", "s3://")), name
    train = yaml.safe_load((CLUSTER / "kuberay" / "rayjob-train.yaml").read_text())
    entry = train["spec"]["entrypoint"]
    for part in ("-m diod_ray.train", "--preset tri-pd", "run.num_workers=8", "run.use_gpu=true"):
        assert part in entry
    assert re.search(r"data\.uri=s3://", entry) and re.search(r"run\.storage_path=s3://", entry)


def test_runtime_env_is_valid_installs_nothing_and_is_secret_free():
    from ray.runtime_env import RuntimeEnv

    env = yaml.safe_load(RUNTIME_ENV.read_text())
    RuntimeEnv(**env)  # Ray's own validation of the fields
    _assert_no_install(env, RUNTIME_ENV.name)
    for key in env.get("env_vars", {}):
        assert not re.search(r"SECRET|TOKEN|PASSWORD|ACCESS_KEY", key, re.I), key


# ------------------------------------------------------------------------------------------
# The project image: one place for pins
# ------------------------------------------------------------------------------------------


def _dockerfile() -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(ARG defaults, [(instruction, arguments)]) of cluster/Dockerfile, continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    steps = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instr, _, rest = line.strip().partition(" ")
            steps.append((instr.upper(), rest.strip()))
    args = {}
    for instr, rest in steps:
        if instr == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
    return args, steps


def test_project_image_builds_on_rays_image_and_installs_the_pins_from_pyproject():
    args, steps = _dockerfile()
    froms = [rest for instr, rest in steps if instr == "FROM"]
    assert len(froms) == 1, froms
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], froms[0])
    assert base.split("@")[0] == _base_image()  # by digest: tests/platform/test_images.py
    runs = " ".join(rest for instr, rest in steps if instr == "RUN")
    # pyproject.toml is the one place for pins: installed as a package, no version in the image
    assert re.search(r"pip install [^&;]*\s\.(\s|$)", runs), runs
    assert "cluster/check_image.py" in runs
    assert not re.search(r"[A-Za-z0-9_.\-\]]==\d", DOCKERFILE.read_text()), "pin in the Dockerfile"
    copied = " ".join(rest for instr, rest in steps if instr == "COPY")
    for part in ("pyproject.toml", "diod_ray", "sweeps", "cluster"):
        assert part in copied, f"the image does not copy {part}"
    for instr, rest in steps:
        assert not (instr in ("ARG", "ENV") and re.search(r"AWS_|SECRET|TOKEN|PASSWORD", rest)), (
            f"credential-like {instr} in the Dockerfile: {rest}"
        )
    # the build context is an allowlist: no .git, runs, venvs or local credentials files in it
    ignore = (CLUSTER / "Dockerfile.dockerignore").read_text().splitlines()
    assert "**" in ignore and "!pyproject.toml" in ignore and "!diod_ray/**" in ignore


def test_no_cluster_file_carries_its_own_pins():
    """The pin lists that used to be copied into three cluster files are gone for good."""
    pinned = [n for n in _pins() if n != "ray"]
    for path in [LAUNCHER, RUNTIME_ENV, *KUBERAY]:
        text = path.read_text()
        for name in pinned:
            assert not re.search(rf"(?im)^[\s-]*{re.escape(name)}\s*==", text), (
                f"{path.name} pins {name}: pins live in pyproject.toml, the image installs them"
            )


def test_image_check_accepts_this_environment_and_names_a_mismatch(monkeypatch):
    import importlib.metadata as md
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_image", CLUSTER / "check_image.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    assert check.problems() == []  # the development environment is what pyproject.toml pins
    real = md.version
    monkeypatch.setattr(check.md, "version", lambda name: "2.59.0" if name == "ray" else real(name))
    assert check.problems() == ["ray 2.59.0 installed, pyproject.toml pins ==2.60.0"]


def test_deprecated_calls_from_our_code_fail_the_suite(ray_session):
    """pyproject.toml's filterwarnings, active in every test: a deprecated Ray API called from a
    diod_ray module raises; Ray's own internal deprecation noise does not."""
    import warnings

    import ray.data
    from ray import tune

    # a real deprecated call, made from code whose module is diod_ray (Ray's stacklevel=2
    # attributes the warning to the caller)
    call = compile("ray.data.range(3).filter(expr='id > 0')", "diod_ray/_probe.py", "exec")
    with pytest.raises(DeprecationWarning, match="String expressions are deprecated"):
        exec(call, {"__name__": "diod_ray._probe", "ray": ray})
    # a RayDeprecationWarning Ray attributes to its own frame is an error all the same
    with pytest.raises(DeprecationWarning, match="`base` argument is deprecated"):
        tune.loguniform(1e-4, 1e-2, base=10)
    # Ray talking to itself (DataContext copies touching deprecated fields) stays quiet
    warnings.warn_explicit(
        "`use_push_based_shuffle` is deprecated!",
        DeprecationWarning,
        "context.py",
        1,
        module="ray.data.context",
    )


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
    from diod_ray.training.telemetry import METRIC_NAMES, METRICS

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
        from diod_ray.training.telemetry import Telemetry
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
    from diod_ray.training.telemetry import Telemetry

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
    from diod_ray.training.telemetry import METRIC_NAMES, Telemetry

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
