"""Images that boot and a supply chain that is checked: the GPU nodes' NVIDIA driver against the
image's CUDA (cluster/gpu_images.json, the launcher's AMIs and boot check, KubeRay's node
affinity), the base image by digest, the hashed lock of the image's pip install, checksummed
monitoring downloads, and the KubeRay pods' securityContext and NetworkPolicy."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
IMAGES = json.loads((CLUSTER / "gpu_images.json").read_text())
LAUNCHER = yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())
KUBERAY = {
    p.name: [d for d in yaml.safe_load_all(p.read_text()) if d]
    for p in sorted((CLUSTER / "kuberay").glob("*.yaml"))
}
DLAMI_SSM = (
    "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def _dockerfile_cuda() -> str:
    """The CUDA of the project image, from its base image tag (``-cuXYZ``) and torch index."""
    text = (CLUSTER / "Dockerfile").read_text()
    base = re.search(r"(?m)^ARG BASE_IMAGE=\S+-cu(\d+)(\d)$", text)
    index = re.search(r"(?m)^ARG TORCH_INDEX_URL=\S+/cu(\d+)(\d)$", text)
    assert base and index, "cluster/Dockerfile: no -cuXYZ base tag or cuXYZ torch index"
    cuda = f"{base.group(1)}.{base.group(2)}"
    assert f"{index.group(1)}.{index.group(2)}" == cuda, "base image and torch disagree on CUDA"
    return cuda


def _min_driver() -> str:
    return IMAGES["cuda_min_driver_linux"][_dockerfile_cuda()]


# ------------------------------------------------------------------------------------------
# 1. The NVIDIA driver of every GPU node against the image's CUDA
# ------------------------------------------------------------------------------------------


def test_the_record_names_the_images_cuda_and_nvidias_minimum_driver():
    assert IMAGES["image"]["cuda"] == _dockerfile_cuda() == "12.8"
    # NVIDIA's table (CUDA Toolkit release notes, Table 3): CUDA 12.8 GA needs >= 570.26 on Linux
    assert _min_driver() == "570.26"
    table = {k: _version(v) for k, v in IMAGES["cuda_min_driver_linux"].items() if k != "source"}
    ordered = sorted(table, key=_version)
    assert [table[k] for k in ordered] == sorted(table.values()), "later CUDA, later driver"


def test_every_launcher_node_type_boots_an_ami_whose_driver_runs_the_image():
    record = IMAGES["aws_launcher"]
    assert LAUNCHER["provider"]["region"] == record["region"]
    assert record["ssm_parameter"] == DLAMI_SSM and DLAMI_SSM in record["lookup"]
    assert f"--region {record['region']}" in record["lookup"]
    types = LAUNCHER["available_node_types"]
    assert set(types) == set(record["node_types"]), "a node type without a driver record"
    for name, node_type in types.items():
        # no ImageId means Ray's default Ubuntu 18.04 DLAMI (a CUDA 11 driver)
        assert node_type["node_config"].get("ImageId") == f"resolve:ssm:{DLAMI_SSM}", name
        gpu = re.match(
            r"(g4dn|g5|g6|g6e|p3|p4d|p4de|p5)\.", node_type["node_config"]["InstanceType"]
        )
        entry = record["node_types"][name]
        assert entry["gpu"] == bool(gpu), name
        if gpu:
            assert _version(entry["nvidia_driver"]) >= _version(_min_driver()), name


def _boot_check(node_type: dict) -> str:
    (check,) = [c for c in node_type["initialization_commands"] if "nvidia-smi" in c]
    return check


def test_gpu_nodes_refuse_an_old_driver_at_boot_and_still_log_in_to_the_registry(tmp_path):
    """The boot check of the GPU node type, run by bash against an nvidia-smi stand-in that
    prints a given driver version (the real one needs a GPU): >= 570.26 passes, older fails
    with the reason, a missing driver fails."""
    gpu = LAUNCHER["available_node_types"]["ray.worker.gpu"]
    check = _boot_check(gpu)
    assert f"'{_min_driver()}" in check, "the boot check's minimum is not gpu_images.json's"
    # node-type initialization_commands replace the global ones: the registry login is kept
    assert any("docker login" in c for c in gpu["initialization_commands"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    for version, ok in [
        ("580.105.08", True),
        ("570.26", True),
        ("570.195.03", True),
        ("570.25", False),
        ("550.127.08", False),
        ("470.82.01", False),
        ("", False),
    ]:
        smi.write_text(f"#!/bin/sh\necho '{version}'\n" if version else "#!/bin/sh\nexit 9\n")
        smi.chmod(0o755)
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
        proc = subprocess.run(["bash", "-c", check], env=env, capture_output=True, text=True)
        assert (proc.returncode == 0) == ok, (version, proc.stderr)
        if not ok:
            assert "needs >= 570.26" in proc.stderr


def _specs(doc: dict) -> list[dict]:
    if doc["kind"] == "RayCluster":
        return [doc["spec"]]
    if doc["kind"] == "RayJob":
        return [doc["spec"]["rayClusterSpec"]]
    return []


def _all_specs() -> list[tuple[str, dict]]:
    return [(name, s) for name, docs in KUBERAY.items() for d in docs for s in _specs(d)]


def _pods(spec: dict) -> list[tuple[str, dict]]:
    pods = [("head", spec["headGroupSpec"]["template"]["spec"])]
    return pods + [(g["groupName"], g["template"]["spec"]) for g in spec["workerGroupSpecs"]]


def _driver_floor(terms: list[dict], major_label: str, minor_label: str) -> tuple[int, int]:
    """The lowest (major, minor) driver a set of OR-ed nodeSelectorTerms admits."""
    floors = []
    for term in terms:
        exprs = {e["key"]: e for e in term["matchExpressions"]}
        assert exprs["nvidia.com/gpu.present"]["values"] == ["true"]
        major, minor = exprs[major_label], exprs.get(minor_label)
        if major["operator"] == "Gt":
            floors.append((int(major["values"][0]) + 1, 0))
        else:
            assert major["operator"] == "In" and minor and minor["operator"] == "Gt"
            floors.append((int(major["values"][0]), int(minor["values"][0]) + 1))
    return min(floors)


def test_kuberay_gpu_pods_land_only_on_nodes_whose_driver_runs_the_image():
    record = IMAGES["kuberay"]
    assert record["nvidia_driver_min"] == _min_driver()
    need = _version(_min_driver())[:2]
    specs = _all_specs()
    assert {f"cluster/kuberay/{name}" for name, _ in specs} == set(record["configs"])
    for name, spec in specs:
        for group, pod in _pods(spec):
            gpus = sum(
                int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))
                for c in pod["containers"]
            )
            if not gpus:
                continue
            terms = pod["affinity"]["nodeAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"
            ]["nodeSelectorTerms"]
            floor = _driver_floor(terms, record["driver_major_label"], record["driver_minor_label"])
            # exactly the minimum: 570.26 admitted, 570.25 not
            assert floor == need, f"{name}:{group} admits drivers from {floor}"


# ------------------------------------------------------------------------------------------
# 2. Worker-group start timeout for GPU nodes that take minutes to boot
# ------------------------------------------------------------------------------------------

START_TIMEOUT = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"


def test_worker_group_start_timeout_is_raised_where_the_drivers_run():
    """Ray 2.60 gives a worker group 60 s to start; a GPU node needs minutes. The variable is the
    one Ray Train reads (found in the installed ray.train sources, not imported from them)."""
    import ray.train

    default = 60.0
    sources = Path(ray.train.__file__).parent.rglob("*.py")
    assert any(START_TIMEOUT in p.read_text(errors="replace") for p in sources)
    opts = LAUNCHER["docker"]["run_options"]
    (launcher,) = [o for o in opts if START_TIMEOUT in o]
    assert float(launcher.split("=")[1]) >= 10 * default
    runtime_env = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    assert float(runtime_env["env_vars"][START_TIMEOUT]) >= 10 * default
    for name, spec in _all_specs():
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in head.get("env", [])}
        assert float(env[START_TIMEOUT]) >= 10 * default, name


def test_sweep_rayjob_autoscales_its_gpus_and_plans_for_what_it_can_grow_to():
    (job,) = KUBERAY["rayjob-sweep.yaml"]
    group = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert group["minReplicas"] == 0 and group["replicas"] == 0
    entry = job["spec"]["entrypoint"]
    gpus = float(re.search(r"--cluster-gpus (\d+)", entry).group(1))
    assert gpus == group["maxReplicas"] * int(
        group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    )
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    limit_gi = float(head["resources"]["limits"]["memory"].removesuffix("Gi"))
    assert float(re.search(r"--head-memory-gb (\d+)", entry).group(1)) <= limit_gi * 1.074


# ------------------------------------------------------------------------------------------
# 3. Supply chain: base image by digest, hashed lock, checksummed downloads
# ------------------------------------------------------------------------------------------

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def test_base_image_is_named_by_digest_or_the_build_stops():
    text = (CLUSTER / "Dockerfile").read_text()
    (line,) = re.findall(r"(?m)^FROM .*$", text)
    assert line == "FROM ${BASE_IMAGE}@${BASE_DIGEST}"
    default = re.search(r"(?m)^ARG BASE_DIGEST=(\S+)$", text).group(1)
    # either a recorded digest, or a default docker rejects at the FROM line ("invalid reference
    # format"), never a tag alone; how to look it up is written next to it
    assert DIGEST.fullmatch(default) or (
        default.startswith("sha256:") and not re.fullmatch(r"sha256:[0-9a-f]*", default)
    )
    assert "docker buildx imagetools inspect rayproject/ray:" in text


def test_image_installs_a_hashed_lock_derived_from_the_pins():
    lock = (CLUSTER / "requirements.lock").read_text()
    text = (CLUSTER / "Dockerfile").read_text()
    assert "pip install --no-cache-dir --require-hashes -r cluster/requirements.lock" in text
    assert "check_image.py --lock cluster/requirements.lock" in text
    entries = re.findall(
        r"(?m)^([A-Za-z0-9_.-]+)==(\S+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}.*\n)+)", lock
    )
    names = {n.lower(): v for n, v, _ in entries}
    assert len(entries) == len(re.findall(r"(?m)^[A-Za-z0-9_.-]+==", lock)) > 50
    # every pin of pyproject.toml, at the same version, except the CUDA-variant torch pair
    pyproject = (REPO / "pyproject.toml").read_text()
    block = re.search(r"(?ms)^dependencies\s*=\s*\[(.*?)^\]", pyproject).group(1)
    for name, version in re.findall(
        r'^\s*"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^"]+)"', block, re.M
    ):
        if name in ("torch", "torchvision"):
            assert name not in names, "torch comes from PyTorch's cu128 index, not the lock"
            continue
        assert names.get(name.lower()) == version, f"{name}: lock {names.get(name.lower())}"
    assert not [n for n in names if n.startswith(("nvidia-", "cuda-")) or n == "triton"]


def test_image_check_finds_a_package_off_the_lock(tmp_path):
    import importlib.metadata as md
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_image", CLUSTER / "check_image.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    lock = tmp_path / "req.lock"
    lock.write_text(
        f"pyyaml=={md.version('pyyaml')} \\\n    --hash=sha256:{'0' * 64}\n"
        f"numpy==0.0.1 \\\n    --hash=sha256:{'1' * 64}\n"
        f"no-such-package-here==1.0 \\\n    --hash=sha256:{'2' * 64}\n"
    )
    assert check.lock_problems(str(lock)) == [
        "no-such-package-here is not installed (" + str(lock) + " locks 1.0)",
        f"numpy {md.version('numpy')} installed, {lock} locks 0.0.1",
    ]


def _tarball(path: Path, top: str, member: str) -> None:
    exe = path.parent / "exe"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(exe, arcname=f"{top}/{member}")


@pytest.fixture()
def release_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving stand-in Prometheus and Grafana releases laid
    out as their sites publish them (tarball + sha256sums.txt / tarball.sha256)."""
    root = tmp_path / "www"
    prom = root / "prometheus" / "v2.53.3"
    graf = root / "grafana"
    prom.mkdir(parents=True)
    graf.mkdir(parents=True)
    p_tar = prom / "prometheus-2.53.3.linux-amd64.tar.gz"
    g_tar = graf / "grafana-11.3.0.linux-amd64.tar.gz"
    _tarball(p_tar, "prometheus-2.53.3.linux-amd64", "prometheus")
    _tarball(g_tar, "grafana-v11.3.0", "bin/grafana")
    sha = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (p_tar, g_tar)}
    (prom / "sha256sums.txt").write_text(
        f"{'a' * 64}  prometheus-2.53.3.darwin-amd64.tar.gz\n{sha[p_tar]}  {p_tar.name}\n"
    )
    (graf / f"{g_tar.name}.sha256").write_text(sha[g_tar])

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", sha[p_tar], sha[g_tar], p_tar
    server.shutdown()


def _monitoring(tmp_path: Path, base: str, **env) -> subprocess.CompletedProcess:
    ray_tmp = tmp_path / "ray"
    metrics = ray_tmp / "session_latest" / "metrics"
    (metrics / "prometheus").mkdir(parents=True, exist_ok=True)
    (metrics / "prometheus" / "prometheus.yml").write_text("global: {}\n")
    (metrics / "grafana" / "dashboards").mkdir(parents=True, exist_ok=True)
    dest = tmp_path / "mon"
    shutil.rmtree(dest, ignore_errors=True)
    full = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "RAY_TMP": str(ray_tmp),
        "MONITORING_DIR": str(dest),
        "PROMETHEUS_URL_BASE": f"{base}/prometheus",
        "GRAFANA_URL_BASE": f"{base}/grafana",
        **env,
    }
    return subprocess.run(
        ["bash", str(CLUSTER / "monitoring.sh")],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(shutil.which("curl") is None, reason="monitoring.sh downloads with curl")
def test_monitoring_downloads_are_checked_before_they_are_unpacked(tmp_path, release_server):
    base, p_sha, g_sha, p_tar = release_server
    # published checksum files: verified, unpacked, and the line to pin is printed
    proc = _monitoring(tmp_path, base)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mon" / "prometheus" / "prometheus").exists()
    assert (tmp_path / "mon" / "grafana" / "bin" / "grafana").exists()
    assert f"pin it: {p_sha}" in proc.stderr and f"pin it: {g_sha}" in proc.stderr
    # a pinned sha256 that the download does not match: stopped, nothing unpacked
    proc = _monitoring(tmp_path, base, PROMETHEUS_SHA256="b" * 64)
    assert proc.returncode != 0 and "does not match" in proc.stderr
    assert not (tmp_path / "mon" / "prometheus" / "prometheus").exists()
    assert not list((tmp_path / "mon").glob("*.tar.gz"))
    # a tarball altered after its checksum was published: stopped the same way
    p_tar.write_bytes(p_tar.read_bytes() + b"\0")
    proc = _monitoring(tmp_path, base)
    assert proc.returncode != 0 and "does not match" in proc.stderr
    # the pinned, right value passes without the published file
    p_tar.write_bytes(p_tar.read_bytes()[:-1])
    (p_tar.parent / "sha256sums.txt").unlink()
    proc = _monitoring(tmp_path, base, PROMETHEUS_SHA256=p_sha, GRAFANA_SHA256=g_sha)
    assert proc.returncode == 0, proc.stderr
    assert "pin it" not in proc.stderr


# ------------------------------------------------------------------------------------------
# 4. KubeRay pods: securityContext and NetworkPolicy
# ------------------------------------------------------------------------------------------


def test_kuberay_pods_run_non_root_without_privileges_on_a_read_only_root():
    for name, spec in _all_specs():
        for group, pod in _pods(spec):
            where = f"{name}:{group}"
            sc = pod["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 1000, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            writable = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
            for c in pod["containers"]:
                csc = c["securityContext"]
                assert csc["allowPrivilegeEscalation"] is False, where
                assert csc["readOnlyRootFilesystem"] is True, where
                assert csc["capabilities"] == {"drop": ["ALL"]}, where
                mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
                # where Ray and the job write: /tmp (with /tmp/ray), the ray user's caches
                for path in ("/tmp", "/tmp/ray", "/home/ray/.cache", "/home/ray/.config"):
                    assert mounts.get(path) in writable, f"{where}: {path} not writable"


def test_network_policy_admits_dashboard_and_gcs_only_from_the_namespace():
    (policy,) = KUBERAY["networkpolicy.yaml"]
    assert policy["apiVersion"] == "networking.k8s.io/v1" and policy["kind"] == "NetworkPolicy"
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    # it selects every pod KubeRay creates
    assert spec["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/created-by": "kuberay-operator"
    }

    def admitted(port: int, peer: dict) -> bool:
        """Would a connection to ``port`` from ``peer`` ({namespace: same|other, labels}) pass?"""
        for rule in spec["ingress"]:
            ports = {p["port"] for p in rule.get("ports", [])}
            if ports and port not in ports:
                continue
            for src in rule["from"]:
                ns_ok = (
                    peer["same_ns"]
                    if "namespaceSelector" not in src
                    else all(
                        peer["ns_labels"].get(k) == v
                        for k, v in src["namespaceSelector"].get("matchLabels", {}).items()
                    )
                )
                pod_ok = all(
                    peer["labels"].get(k) == v
                    for k, v in src.get("podSelector", {}).get("matchLabels", {}).items()
                )
                if ns_ok and pod_ok:
                    return True
        return False

    inside = {"same_ns": True, "ns_labels": {}, "labels": {"app": "anything"}}
    outside = {
        "same_ns": False,
        "ns_labels": {"kubernetes.io/metadata.name": "other"},
        "labels": {"app": "anything"},
    }
    operator = {**outside, "labels": {"app.kubernetes.io/name": "kuberay-operator"}}
    prometheus = {**outside, "ns_labels": {"kubernetes.io/metadata.name": "prometheus-system"}}
    for port in (6379, 8265, 10001, 52365):
        assert admitted(port, inside), port
        assert not admitted(port, outside), port
        assert not admitted(port, prometheus), port
    assert admitted(8265, operator) and not admitted(6379, operator)
    assert admitted(8080, prometheus)
