"""`vfx serve` on one machine: the deployments' resource asks fitted to what its Ray node has.

Ray's ``num_cpus`` is a scheduling token, not a CPU limit: a replica asking 0.3 CPU still uses a
whole core when it has work. So when the deployments together ask more CPUs than the node has,
every ask is scaled by the same factor and all of them are scheduled; without that the
service accepts jobs its ChunkWorkers can never be placed to run. GPUs and custom resources
cannot be scaled: a deployment asking for one the node lacks is refused at start, naming it.
"""
from __future__ import annotations

import math
from typing import Any

from vfx.errors import VfxError

HEADROOM = 0.99  # fractional asks are rounded by Ray; never ask for the node's exact total


def replicas_of(options: dict[str, Any]) -> int:
    """Replicas a deployment starts with (``num_replicas``, or the autoscaler's minimum)."""
    autoscaling = options.get("autoscaling_config") or {}
    count = options.get("num_replicas", 1)
    if count == "auto" or autoscaling:
        count = autoscaling.get("min_replicas", autoscaling.get("initial_replicas", 1))
    return max(1, int(count))


def asks(options: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Total of each resource the deployments ask for with their starting replicas."""
    total: dict[str, float] = {}
    for name, deployment in options.items():
        actor = deployment.get("ray_actor_options") or {}
        wanted = {"CPU": actor.get("num_cpus", 1), "GPU": actor.get("num_gpus", 0), **(actor.get("resources") or {})}
        for resource, amount in wanted.items():
            total[resource] = total.get(resource, 0.0) + float(amount) * replicas_of(deployment)
    return total


def fit_to_node(options: dict[str, dict[str, Any]], node: dict[str, float], source: str) -> tuple[dict, float]:
    """``options`` with CPU asks scaled to fit ``node`` (Ray's cluster_resources), and the factor used.

    Raises VfxError, naming the deployment and setting, when a GPU or custom resource is missing."""
    for name, deployment in options.items():
        actor = deployment.get("ray_actor_options") or {}
        wanted = {"GPU": actor.get("num_gpus", 0), **(actor.get("resources") or {})}
        for resource, amount in wanted.items():
            if amount and node.get(resource, 0.0) < float(amount):
                setting = "num_gpus" if resource == "GPU" else f"resources.{resource}"
                raise VfxError(f"deployment {name} asks for {amount:g} {resource} but this machine has "
                               f"{node.get(resource, 0.0):g}; set ray_actor_options.{setting} in {source}")
    cpus = node.get("CPU", 0.0)
    wanted_cpus = asks(options).get("CPU", 0.0)
    if cpus <= 0:
        raise VfxError("Ray reports no CPUs on this machine; give --num-cpus")
    if wanted_cpus <= cpus * HEADROOM:
        return options, 1.0
    factor = math.floor(cpus * HEADROOM / wanted_cpus * 1000) / 1000
    fitted = {}
    for name, deployment in options.items():
        actor = dict(deployment.get("ray_actor_options") or {})
        actor["num_cpus"] = round(float(actor.get("num_cpus", 1)) * factor, 4)
        fitted[name] = {**deployment, "ray_actor_options": actor}
    return fitted, factor
