"""The multi-node storage guard: a run or sweep whose work spans several nodes must keep its
checkpoints, kept burn-in models and Tune state where every node finds them (object storage, or
a local path declared shared with ``storage.shared_local``, e.g. an NFS mount on every node).
Checked once before anything runs; :func:`require_shared` is the rule, the rest asks Ray."""

from __future__ import annotations

from diod_ray import storage
from diod_ray.config import Config, StorageConfig
from diod_ray.errors import StorageError


def require_shared(
    uri: str, setting: str, settings: StorageConfig | None, nodes: int, reason: str = ""
) -> None:
    """Refuse a node-local ``uri`` (the value of ``setting``) when the work spans ``nodes`` > 1
    machines: each node would write its own checkpoints / state where no other node (nor a
    restarted driver) finds them. ``reason`` replaces "the Ray cluster has N nodes"."""
    if nodes <= 1 or not storage.is_local(uri) or (settings is not None and settings.shared_local):
        return
    raise StorageError(
        f"{setting} is a node-local path but {reason or f'the Ray cluster has {nodes} nodes'}: "
        "checkpoints, kept burn-in models and Tune state would be scattered over their disks",
        uri=storage.normalise_uri(uri),
        expected=f"{setting}=s3://bucket/prefix, or storage.shared_local=true for a path every "
        "node mounts (NFS)",
    )


def alive_nodes() -> list[dict]:
    """The alive nodes of the Ray cluster this process is connected to (``ray.nodes()``)."""
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def require_shared_storage(uri: str, setting: str, settings: StorageConfig | None) -> None:
    """Refuse a node-local ``uri`` (named ``setting`` in the error) on a cluster of > 1 nodes."""
    require_shared(uri, setting, settings, len(alive_nodes()))


def check_run_storage(cfg: Config) -> None:
    """Before a run: ``run.storage_path`` must be shared when the cluster has more than one node,
    or when the run's Train workers cannot all fit on the one node up now (they will run on
    nodes an autoscaler adds)."""
    nodes = alive_nodes()
    count, reason = len(nodes), ""
    if count == 1 and cfg.run.num_workers > 1:
        need = {"CPU": cfg.run.num_workers * cfg.run.cpus_per_worker}
        if cfg.run.use_gpu:
            need["GPU"] = float(cfg.run.num_workers)
        have = nodes[0].get("Resources", {})
        short = {k: v for k, v in need.items() if v > float(have.get(k, 0.0))}
        if short:
            count = 2
            reason = (
                f"its {cfg.run.num_workers} Train workers need "
                + ", ".join(f"{v:g} {k}" for k, v in short.items())
                + ", more than the one node up now has, so they will run on other nodes"
            )
    require_shared(cfg.run.storage_path, "run.storage_path", cfg.storage, count, reason)
