"""No credentials in the repository, and none leak from the environment into a run.

1. Every tracked or untracked-but-not-ignored file is scanned for key patterns (AWS key ids and
   secret assignments, private key headers, GitHub / Slack tokens, literal passwords and secrets
   in YAML). The moto test credential "testing" and placeholders are allowed.
2. One job, its shell's environment holding fake-but-real-looking AWS credentials (and a Ray
   token), runs `python -m diod_ray.train` on a laptop (no RAY_ADDRESS: the CLI starts its own
   Ray, whose console is checked too), then a training job and a sweep on the local S3 server.
   The laptop run's directory (checkpoints, TensorBoard event files, summaries: every byte,
   inside zip / gzip containers too), the bucket's objects, the job's HOME and Ray session tree
   and its output must not contain them. The job runs once for the three tests that read it.
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
# Looking for planted credentials in every byte a run wrote
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


def _leaks(root: Path, needles: dict[bytes, str], skip: Path | None = None) -> list[str]:
    """Every file under ``root`` (but ``skip``'s subtree), containers unpacked."""
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if skip is not None and path.is_relative_to(skip):
            continue
        try:
            if path.stat().st_size > MAX_SCAN_BYTES:
                continue
            payloads = _payloads(path)
        except OSError:
            continue  # a log file rotated away while scanning
        for where, data in payloads:
            hits += [f"{label} in {where}" for n, label in needles.items() if n in data]
    return hits


# ------------------------------------------------------------------------------------------
# S3 storage: the filesystem object
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


# ------------------------------------------------------------------------------------------
# One process with planted credentials: a laptop run, a training job and a sweep on S3
# ------------------------------------------------------------------------------------------

# The job plays a user's shell whose environment holds the planted keys (moto accepts any key:
# they sign every request of every process) and no RAY_ADDRESS. It runs, in one Ray instance:
# 1. `python -m diod_ray.train --preset smoke` (runpy: the CLI's own `__main__` path, in this
#    fresh process): with no RAY_ADDRESS the CLI starts its own local Ray with LOCAL_CLUSTER_ENV,
#    so every Ray process inherits the keys, as processes inherit them from a shell. Local storage
#    and data; a kept burn-in checkpoint (full state + config) is written even in local mode.
# 2. A training job on S3 (data and runs), the keys in the environment, in the same Ray.
# 3. A one-cell alpha-burnin sweep (2 stages) on S3 with the same keys in a shared credentials
#    file (AWS_SHARED_CREDENTIALS_FILE; on KubeRay the Secret mounted as ~/.aws/credentials).
#    A sweep cannot take them from the environment: Ray Tune copies AWS_ACCESS_KEY_ID,
#    AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN from the driver's environment into every trial
#    actor's runtime_env (ray/tune/execution/class_cache.py), and Ray's runtime_env agent writes
#    it to the session's runtime_env_agent.log (cluster/README.md, "S3 access").
# One Ray start for the three (a start with its dashboard took ~20 s on 2 busy cores). Each step
# prints a "SECURITY-JOB <step> rc=<status> at <s> s" line; the next one runs even if it failed.
_SECURITY_JOB = """
import hashlib, os, runpy, sys, time, traceback

bucket, credentials_file, laptop, secret_sha256 = sys.argv[1:5]
t0 = time.monotonic()
# the planted keys really are this process's environment (their hash travels, not the keys)
assert hashlib.sha256(os.environ["AWS_SECRET_ACCESS_KEY"].encode()).hexdigest() == secret_sha256
assert "RAY_ADDRESS" not in os.environ and "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER" not in os.environ

def step(name, fn):
    try:
        rc = fn()
    except SystemExit as exc:
        rc = exc.code
    except BaseException:
        traceback.print_exc()
        rc = "exception"
    print(f"SECURITY-JOB {name} rc={rc} at {time.monotonic() - t0:.1f} s", flush=True)

def laptop_cli():
    sys.argv = ["diod_ray.train", "--preset", "smoke", "--set", f"data.uri={laptop}/data",
                f"run.storage_path={laptop}/runs", "run.name=laptop",
                "schedule.keep_burn_in_epochs=[1]"]
    runpy.run_module("diod_ray.train", run_name="__main__", alter_sys=True)

def s3_train():
    from diod_ray import train
    return train.main(["--preset", "smoke", "--set", f"data.uri=s3://{bucket}/data",
                       f"run.storage_path=s3://{bucket}/runs", "schedule.keep_burn_in_epochs=[1]"])

def s3_sweep():
    from diod_ray.sweeps.commands import alpha_burnin
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        del os.environ[name]
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = credentials_file
    return alpha_burnin(["--preset", "smoke", "--alphas", "0.3", "--burn-in", "1",
                         "--distill", "1", "--set", f"data.uri=s3://{bucket}/data",
                         "--storage", f"s3://{bucket}/sweeps", "--name", "leak"])

def ray_shutdown():
    import ray
    ray.shutdown()
    return 0

step("laptop", laptop_cli)
step("s3-train", s3_train)
step("s3-sweep", s3_sweep)
step("ray-shutdown", ray_shutdown)  # before the interpreter's exit: its time is in the timeline
"""


@dataclass(frozen=True)
class SecurityJob:
    """What the job left: its console, its files (``root``: HOME, RAY_TMPDIR, the laptop run's
    storage and data) and the bucket's objects, and the planted credentials to look for."""

    stdout: str
    stderr: str
    root: Path
    laptop: Path
    objects: dict[str, bytes]
    bucket: str
    needles: dict[bytes, str]

    @property
    def console(self) -> str:
        return self.stdout + self.stderr

    def step_rc(self, step: str) -> str | None:
        m = re.search(rf"^SECURITY-JOB {step} rc=(\S+) at ", self.stdout, re.M)
        return m.group(1) if m else None

    def stdout_before(self, step: str) -> list[str]:
        """The stdout lines the job printed before ``step``'s SECURITY-JOB line."""
        lines = self.stdout.splitlines()
        end = next(i for i, ln in enumerate(lines) if ln.startswith(f"SECURITY-JOB {step} "))
        return lines[:end]


def _bucket_objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


@pytest.fixture(scope="module")
def security_job(s3_server):
    """Runs the job once for the module's three tests (2-2.5 min on 2 busy cores)."""
    import hashlib
    import shutil
    import sys
    import tempfile
    import uuid

    import boto3

    bucket = f"diod-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    fake = _fake_credentials(int(time.time()) + 1)
    # short: Ray's unix sockets live under RAY_TMPDIR (path limit 107 bytes)
    root = Path(tempfile.mkdtemp(prefix="dsec", dir="/tmp"))
    # the user's credential store: the one place the keys may be, outside the scanned tree
    creds = Path(tempfile.mkdtemp(prefix="dsec-aws")) / "credentials"
    try:
        creds.write_text(
            "[default]\n" + "".join(f"{k.lower()} = {fake[k]}\n" for k in list(fake)[:3])
        )
        # a laptop's shell: no RAY_ADDRESS, and none of the settings conftest.py gives the
        # session's Ray that the CLI decides itself (LOCAL_CLUSTER_ENV)
        drop = {"RAY_ADDRESS", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"}
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env.update(fake)
        env.update(
            HOME=str(root / "home"),  # ~/ray_results, ~/.cache, ~/.ray: all inside the scan
            RAY_TMPDIR=str(root / "ray"),  # Ray session: logs, Tune/Train staging, spilled objects
            RAY_AUTH_MODE="disabled",
            RAY_USAGE_STATS_ENABLED="0",
            AWS_EC2_METADATA_DISABLED="true",
            PYTHONPATH=str(REPO),
        )
        for sub in ("home", "ray", "laptop"):
            (root / sub).mkdir()
        secret_sha256 = hashlib.sha256(fake["AWS_SECRET_ACCESS_KEY"].encode()).hexdigest()
        args = [bucket, str(creds), str(root / "laptop"), secret_sha256]
        proc = subprocess.run(
            [sys.executable, "-c", _SECURITY_JOB, *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=540,
        )
        print(*re.findall(r"^SECURITY-JOB .*$", proc.stdout, re.M), sep="\n")  # -s shows them
        yield SecurityJob(
            stdout=proc.stdout,
            stderr=proc.stderr,
            root=root,
            laptop=root / "laptop",
            objects=_bucket_objects(s3_server, bucket),
            bucket=bucket,
            needles=_needles(fake),
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(creds.parent, ignore_errors=True)


@pytest.mark.slow  # the module's job: its own Ray, 2 smoke training runs and a 2-stage sweep
@pytest.mark.timeout(600)
def test_laptop_cli_starts_its_own_ray_without_the_preemption_watcher_error(security_job):
    """`python -m diod_ray.train` on a laptop (no RAY_ADDRESS) starts its own Ray instance with
    LOCAL_CLUSTER_ENV: the console has its epoch lines and JSON line, and not the core_worker.cc
    ERROR line Train V2's preemption watcher logs on creation (ray-project/ray#53727). The job's
    later steps run in that instance, so the whole console is checked for the line."""
    job = security_job
    assert job.step_rc("laptop") == "0", job.console[-6000:]
    epoch_lines = [ln for ln in job.console.splitlines() if "[laptop] " in ln and " epoch " in ln]
    assert len(epoch_lines) == 2, epoch_lines
    last = json.loads(job.stdout_before("laptop")[-1])  # the CLI's last stdout line
    assert last["run"] == "laptop" and last["steps"] == 4, last
    assert "PreemptionWatcher" not in job.console, job.console[-6000:]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_laptop_run_leaks_no_credentials(security_job):
    """The laptop run's directory (checkpoints, TensorBoard event files, summaries: every byte,
    inside zip / gzip containers too), its data and its summary line hold none of the keys."""
    job = security_job
    assert job.step_rc("laptop") == "0", job.console[-6000:]
    run_dir = job.laptop / "runs" / "laptop"
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    # The scan below must have something to find things in: checkpoints and TensorBoard events.
    assert any("tfevents" in p.name for p in files), f"no TensorBoard files in {run_dir}"
    assert any(zipfile.is_zipfile(p) for p in files), f"no checkpoint files in {run_dir}"
    assert any((job.laptop / "data").rglob("*.parquet")), "no shards in the laptop's data"

    line = job.stdout_before("laptop")[-1]  # the CLI's summary line
    hits = _leaks(job.laptop, job.needles)  # its runs/ and data/
    # Ray Train's latest checkpoint: inside run_dir when persisted; scan it wherever it is.
    ckpt = Path(str(json.loads(line).get("checkpoint") or ""))
    if str(ckpt) != "." and ckpt.is_dir() and job.laptop not in ckpt.parents:
        hits += _leaks(ckpt, job.needles)
    hits += [
        f"{label} in the summary line" for n, label in job.needles.items() if n in line.encode()
    ]
    assert not hits, "credentials leaked:\n" + "\n".join(hits)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_s3_train_and_sweep_leak_no_credentials(security_job):
    """The bucket's objects (the training job's and the sweep's, Tune's experiment state among
    them), the rest of the job's tree (HOME, the Ray session's logs, staging dirs, spilled objects)
    and the job's whole output hold none of the keys."""
    job = security_job
    for step in ("s3-train", "s3-sweep"):
        assert job.step_rc(step) == "0", f"{step}: " + job.console[-6000:]
    names = list(job.objects)
    # the scan must have the files the issue found the keys in, and the run's own files
    for part in ("tuner.pkl", "basic-variant-state-", "tfevents", "summary.json", ".parquet"):
        assert any(part in k for k in names), f"no {part!r} object among {names}"
    assert any(k.startswith("runs/") and k.endswith("state.pt") for k in names), names
    assert any(k.startswith("sweeps/leak/burn_in/") for k in names), names
    assert any(k.startswith("sweeps/leak/distill/") for k in names), names
    assert any((job.root / "ray").rglob("*.log")), "no Ray session logs under RAY_TMPDIR"

    hits = []
    for key, data in job.objects.items():
        for where, payload in _unpacked(f"s3://{job.bucket}/{key}", data):
            hits += [f"{label} in {where}" for n, label in job.needles.items() if n in payload]
    hits += _leaks(job.root, job.needles, skip=job.laptop)  # session logs, staging, caches
    out = job.console.encode()
    hits += [f"{label} in the job's output" for n, label in job.needles.items() if n in out]
    assert not hits, "credentials leaked:\n" + "\n".join(hits)
