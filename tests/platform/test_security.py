"""No credentials in the repository, and none leak from the environment into a run.

1. Every tracked or untracked-but-not-ignored file is scanned for key patterns (AWS key ids and
   secret assignments, private key headers, GitHub / Slack tokens, literal passwords and secrets
   in YAML). The moto test credential "testing" and placeholders are allowed.
2. A smoke training run with fake-but-real-looking AWS credentials (and a Ray token) in the
   environment; the run directory (checkpoints, TensorBoard event files, summaries: every byte,
   inside zip / gzip containers too), the Ray session logs written meanwhile, the returned summary
   and the captured output must not contain them.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import random
import re
import string
import subprocess
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MAX_SCAN_BYTES = 50 * 2**20

# Values that look like credentials but are not: moto's test credentials and placeholders.
ALLOWED_VALUES = {"testing", "test", "changeme", "change-me", "redacted", "dummy", "example"}

LINE_RULES: dict[str, re.Pattern[str]] = {
    "aws-access-key-id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "aws-secret-assignment": re.compile(
        r"(?i)aws_secret_access_key[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{20,})(?![A-Za-z0-9/+=])"
    ),
    "private-key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    "github-token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "slack-token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
}
# `password: value` / `passwd = value` in YAML / INI-like files, with a literal value.
CONFIG_PASSWORD = re.compile(r"(?i)^\s*[-\w.]*(?:password|passwd)\s*[:=]\s*[\"']?([^\s\"'#]+)")
CONFIG_SUFFIXES = {".yaml", ".yml", ".toml", ".ini", ".cfg", ".env", ".conf", ".properties"}
# YAML mapping keys / Kubernetes env names that must never hold a literal value.
SECRET_KEY = re.compile(
    r"(?i)(password|passwd|secret_access_key|secret_key|session_token|auth_token|api_key"
    r"|access_token|private_key|client_secret)$"
)
IDENTIFIER = re.compile(r"^[A-Za-z_][\w.-]*$")  # a key name, not a path (file_mounts)
SECRET_FILENAMES = re.compile(r"(^|/)(id_rsa|id_ed25519|id_ecdsa|auth_token|credentials)$|\.pem$")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


# Obviously fake AWS key ids used in tests and docs (AWS's own example ends in "EXAMPLE").
FAKE_KEY_MARKERS = ("EXAMPLE", "FAKE", "WRONG", "TEST", "DUMMY")


def _placeholder(value: str) -> bool:
    v = value.strip().strip("\"'")
    return (
        v == ""
        or v.lower() in ALLOWED_VALUES
        or v.startswith(("$", "<", "{{", "%("))
        or "CHANGE-ME" in v
        or set(v) <= set("*x.X-_")
    )


def _yaml_findings(node, path: str) -> list[Finding]:
    """Literal values under secret-named keys, and Kubernetes env entries {name, value}."""
    out: list[Finding] = []
    if isinstance(node, dict):
        name = node.get("name")
        if (
            isinstance(name, str)
            and "value" in node
            and re.search(r"(?i)(SECRET|PASSWORD|TOKEN|ACCESS_KEY)", name)
            and isinstance(node["value"], str)
            and not _placeholder(node["value"])
        ):
            out.append(Finding(path, 0, f"literal env value for {name}"))
        for key, value in node.items():
            if isinstance(key, str) and IDENTIFIER.match(key) and SECRET_KEY.search(key):
                literal = isinstance(value, (str, int)) and not isinstance(value, bool)
                if literal and not _placeholder(str(value)):
                    out.append(Finding(path, 0, f"literal value for key {key!r}"))
            out += _yaml_findings(value, path)
    elif isinstance(node, list):
        for item in node:
            out += _yaml_findings(item, path)
    return out


def scan_text(path: str, text: str) -> list[Finding]:
    """Credential findings in one file's text (``path`` decides the config-file rules)."""
    findings: list[Finding] = []
    suffix = Path(path).suffix.lower()
    for lineno, line in enumerate(text.splitlines(), 1):
        for rule, pattern in LINE_RULES.items():
            for m in pattern.finditer(line):
                if m.groups() and _placeholder(m.group(1)):
                    continue
                if rule == "aws-access-key-id" and any(k in m.group(0) for k in FAKE_KEY_MARKERS):
                    continue
                findings.append(Finding(path, lineno, rule))
        if suffix in CONFIG_SUFFIXES:
            m = CONFIG_PASSWORD.search(line)
            if m and not _placeholder(m.group(1)):
                findings.append(Finding(path, lineno, "literal password"))
    if suffix in (".yaml", ".yml"):
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError:
            docs = []  # templated YAML: the line rules above still apply
        for doc in docs:
            findings += _yaml_findings(doc, path)
    return findings


def repository_files() -> list[Path]:
    """Tracked files plus untracked files git does not ignore (what a commit could pick up)."""
    try:
        out = subprocess.run(
            [
                "git",
                "-C",
                str(REPO),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            check=True,
        ).stdout.decode()
        names = [n for n in out.split("\0") if n]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (e.g. an sdist)
        skip = {".git", ".venv", ".ci-venv", "__pycache__", ".pytest_cache", ".ruff_cache"}
        names = [
            str(p.relative_to(REPO))
            for p in REPO.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(REPO).parts)
        ]
    return [REPO / n for n in names if (REPO / n).is_file()]


def test_repository_has_no_credentials():
    files = repository_files()
    assert any(f.name == "pyproject.toml" for f in files)
    findings: list[Finding] = []
    for f in files:
        rel = str(f.relative_to(REPO))
        if SECRET_FILENAMES.search(rel):
            findings.append(Finding(rel, 0, "credential file in the repository"))
        if f.stat().st_size > MAX_SCAN_BYTES:
            continue
        findings += scan_text(rel, f.read_bytes().decode("utf-8", errors="replace"))
    assert not findings, "credentials in the repository:\n" + "\n".join(map(str, findings))


def _rand(alphabet: str, n: int, rng: random.Random) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _fake_credentials(seed: int) -> dict[str, str]:
    rng = random.Random(seed)
    upper = string.ascii_uppercase + string.digits
    b64 = string.ascii_letters + string.digits + "/+"
    return {
        "AWS_ACCESS_KEY_ID": "AKIA" + _rand(upper, 16, rng),
        "AWS_SECRET_ACCESS_KEY": _rand(b64, 40, rng),
        "AWS_SESSION_TOKEN": _rand(b64, 120, rng),
        "RAY_AUTH_TOKEN": _rand(string.hexdigits.lower()[:16], 32, rng),
    }


def test_scanner_catches_planted_credentials():
    fake = _fake_credentials(1)
    header = "-----BEGIN " + "OPENSSH PRIVATE KEY-----"
    cases = {
        "creds.ini": f"[default]\naws_secret_access_key = {fake['AWS_SECRET_ACCESS_KEY']}\n",
        "settings.py": f'KEY_ID = "{fake["AWS_ACCESS_KEY_ID"]}"\n',
        "key.txt": header + "\nabc\n",
        "db.yaml": "database:\n  password: hunter2hunter2\n",
        "pod.yaml": "env:\n  - name: AWS_SECRET_ACCESS_KEY\n    value: abcdefgh12345678\n",
        "runtime.yaml": "env_vars:\n  RAY_AUTH_TOKEN: 0123456789abcdef\n",
        "gh.md": "token " + "ghp_" + "a" * 36 + "\n",
    }
    for name, text in cases.items():
        assert scan_text(name, text), f"scanner missed the credential in {name}"
    fine = {
        "conftest.py": '"AWS_SECRET_ACCESS_KEY": "testing",\n',
        "ok.yaml": (
            "env:\n  - name: AWS_SECRET_ACCESS_KEY\n    valueFrom:\n      secretKeyRef:\n"
            "        name: s3\n        key: secret\n  - name: RAY_AUTH_MODE\n    value: token\n"
            "password: ${DB_PASSWORD}\nauthOptions:\n  mode: token\n"
        ),
        "README.md": "export AWS_SECRET_ACCESS_KEY=$(aws configure get aws_secret_access_key)\n",
        "test_s3.py": 'setenv("AWS_ACCESS_KEY_ID", "AKIA" "WRONGWRONGWRONG1")\n'.replace('" "', ""),
    }
    for name, text in fine.items():
        assert not scan_text(name, text), f"false positive in {name}: {scan_text(name, text)}"


# ------------------------------------------------------------------------------------------
# A smoke run with credentials in the environment
# ------------------------------------------------------------------------------------------


def _needles(values: dict[str, str]) -> dict[bytes, str]:
    out: dict[bytes, str] = {}
    for name, value in values.items():
        out[value.encode()] = name
        out[base64.b64encode(value.encode()).rstrip(b"=")] = f"{name} (base64)"
        out[value.encode("utf-16-le")] = f"{name} (utf-16)"
    return out


def _payloads(path: Path) -> list[tuple[str, bytes]]:
    """The file's bytes, plus the members of zip (torch checkpoints) / gzip containers."""
    return _unpacked(str(path), path.read_bytes())


def _unpacked(where: str, data: bytes) -> list[tuple[str, bytes]]:
    out = [(where, data)]
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            out += [(f"{where}!{n}", zf.read(n)) for n in zf.namelist()]
    elif data[:2] == b"\x1f\x8b":
        out.append((f"{where}!gunzip", gzip.decompress(data)))
    return out


def _leaks(root: Path, needles: dict[bytes, str], since: float = 0.0) -> list[str]:
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            if path.stat().st_mtime < since or path.stat().st_size > MAX_SCAN_BYTES:
                continue
            payloads = _payloads(path)
        except OSError:
            continue  # a log file rotated away while scanning
        for where, data in payloads:
            hits += [f"{label} in {where}" for n, label in needles.items() if n in data]
    return hits


@pytest.mark.slow  # a whole smoke training run (Ray Data tasks in worker processes)
def test_smoke_run_leaks_no_credentials(ray_session, tmp_path, monkeypatch, capfd):
    from diod_ray import train
    from diod_ray.config import load_config

    assert hasattr(train, "run"), "diod_ray.train.run(cfg) is the training entry point"
    fake = _fake_credentials(int(time.time()))
    for name, value in fake.items():
        monkeypatch.setenv(name, value)
    started = time.time() - 1

    storage = tmp_path / "runs"
    # keep_burn_in_epochs: a kept checkpoint (full state + config) is written even in local mode
    sets = [
        f"run.storage_path={storage}",
        f"data.uri={tmp_path / 'data'}",
        "schedule.keep_burn_in_epochs=[1]",
    ]
    cfg = load_config("smoke", None, sets)
    summary = train.run(cfg)

    run_dir = storage / cfg.run.name
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    # The scan below must have something to find things in: checkpoints and TensorBoard events.
    assert any("tfevents" in p.name for p in files), f"no TensorBoard files in {run_dir}"
    assert any(zipfile.is_zipfile(p) for p in files), f"no checkpoint files in {run_dir}"

    needles = _needles(fake)
    hits = _leaks(run_dir, needles)
    # Ray Train's latest checkpoint: inside run_dir when persisted; scan it wherever it is.
    ckpt = Path(str(summary.get("checkpoint") or ""))
    if str(ckpt) != "." and ckpt.is_dir() and run_dir not in ckpt.parents:
        hits += _leaks(ckpt, needles)
    hits += _leaks(tmp_path / "data", needles)
    session_dir = Path(ray_session._private.worker.global_worker.node.get_session_dir_path())
    hits += _leaks(session_dir / "logs", needles, since=started)
    captured = capfd.readouterr()
    for where, text in (
        ("summary", json.dumps(summary)),
        ("stdout", captured.out),
        ("stderr", captured.err),
    ):
        hits += [f"{label} in {where}" for n, label in needles.items() if n in text.encode()]
    assert not hits, "credentials leaked:\n" + "\n".join(hits)
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == fake["AWS_SECRET_ACCESS_KEY"]  # really set


# ------------------------------------------------------------------------------------------
# S3 storage: the filesystem object, and a training job + a sweep against the local S3 server
# ------------------------------------------------------------------------------------------


def test_s3_filesystem_pickles_without_the_environments_keys(monkeypatch):
    """Tune/Train keep RunConfig.storage_filesystem in the experiment state they store
    (tuner.pkl, basic-variant-state-*.json); the pickled filesystem must not carry the keys."""
    import pickle

    from diod_ray.storage import filesystem_for

    fake = _fake_credentials(7)
    for name, value in fake.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    fs, path = filesystem_for("s3://bucket/runs")
    assert path == "bucket/runs"
    data = pickle.dumps(fs)
    assert b"127.0.0.1:9" in data  # endpoint and region are configuration, and do travel
    hits = [label for n, label in _needles(fake).items() if n in data]
    assert not hits, f"the pickled S3 filesystem carries {hits}"
    state = fs.__reduce__()[1][0]  # what pyarrow rebuilds it from
    assert state["access_key"] is None and state["secret_key"] is None
    assert state["session_token"] is None


# One process plays the user's shell: it starts its own local Ray (so every Ray process inherits
# the planted keys, as processes inherit them from a shell), trains with the keys in its
# environment, then runs a one-cell sweep with the same keys in a shared credentials file
# (AWS_SHARED_CREDENTIALS_FILE; on KubeRay the Secret mounted as ~/.aws/credentials). A sweep
# cannot take them from the environment: Ray Tune copies AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN from the driver's environment into every trial
# actor's runtime_env (ray/tune/execution/class_cache.py), and Ray's runtime_env agent writes it
# to the session's runtime_env_agent.log (cluster/README.md, "S3 access").
_S3_RUN_SCRIPT = """
import os, sys
import ray
from diod_ray import train
from diod_ray.sweeps.commands import alpha_burnin

bucket, credentials_file = sys.argv[1], sys.argv[2]
ray.init(address="local", num_cpus=2, include_dashboard=False,
         object_store_memory=256 * 2**20, log_to_driver=True)
sets = [f"data.uri=s3://{bucket}/data", "run.storage_path=s3://" + bucket + "/runs",
        "schedule.keep_burn_in_epochs=[1]"]
assert train.main(["--preset", "smoke", "--set", *sets]) == 0
for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
    del os.environ[name]
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = credentials_file
rc = alpha_burnin(["--preset", "smoke", "--alphas", "0.3", "--burn-in", "1",
                   "--distill", "1", "--set", f"data.uri=s3://{bucket}/data",
                   "--storage", f"s3://{bucket}/sweeps", "--name", "leak"])
assert rc == 0, rc
print("S3-RUN-DONE", flush=True)
"""


def _bucket_objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


@pytest.mark.slow  # its own Ray, a smoke training job and a 2-stage sweep on the S3 server
@pytest.mark.timeout(600)
def test_s3_train_and_sweep_leak_no_credentials(s3_server, s3_bucket):
    import shutil
    import sys
    import tempfile

    fake = _fake_credentials(int(time.time()) + 1)
    # short: Ray's unix sockets live under RAY_TMPDIR (path limit 107 bytes)
    root = Path(tempfile.mkdtemp(prefix="dsec", dir="/tmp"))
    creds = root / "unused"
    try:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(fake)  # moto accepts any key: these sign every request of every process
        env.update(
            HOME=str(root / "home"),  # ~/ray_results, ~/.cache, ~/.ray: all inside the scan
            RAY_TMPDIR=str(root / "ray"),  # Ray session: logs, Tune/Train staging, spilled objects
            AWS_EC2_METADATA_DISABLED="true",
            PYTHONPATH=str(REPO),
        )
        (root / "home").mkdir()
        (root / "ray").mkdir()
        # the user's credential store: the one place the keys may be, outside the scanned tree
        creds = Path(tempfile.mkdtemp(prefix="dsec-aws")) / "credentials"
        creds.write_text(
            "[default]\n" + "".join(f"{k.lower()} = {fake[k]}\n" for k in list(fake)[:3])
        )
        proc = subprocess.run(
            [sys.executable, "-c", _S3_RUN_SCRIPT, s3_bucket, str(creds)],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=540,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0 and b"S3-RUN-DONE" in proc.stdout, out.decode()[-6000:]

        objects = _bucket_objects(s3_server, s3_bucket)
        names = list(objects)
        # the scan must have the files the issue found the keys in, and the run's own files
        for part in ("tuner.pkl", "basic-variant-state-", "tfevents", "summary.json", ".parquet"):
            assert any(part in k for k in names), f"no {part!r} object among {names}"
        assert any(k.startswith("runs/") and k.endswith("state.pt") for k in names), names
        assert any(k.startswith("sweeps/leak/burn_in/") for k in names), names
        assert any(k.startswith("sweeps/leak/distill/") for k in names), names

        needles = _needles(fake)
        hits = []
        for key, data in objects.items():
            for where, payload in _unpacked(f"s3://{s3_bucket}/{key}", data):
                hits += [f"{label} in {where}" for n, label in needles.items() if n in payload]
        hits += _leaks(root, needles)  # session logs, staging dirs, results, caches
        hits += [f"{label} in the job's output" for n, label in needles.items() if n in out]
        assert not hits, "credentials leaked:\n" + "\n".join(hits)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(creds.parent, ignore_errors=True)
