"""Resource requests and limits: the layered `resources` of a Model, its runtime and the
repo defaults, and each request that would be above its limit."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from agent.spec._types import Resources

_NO_RESOURCES = Resources()


def read_resources(raw: Mapping[str, Any] | None, base: Resources = _NO_RESOURCES) -> Resources:
    raw = raw or {}

    def q(key: str, fallback: str | None) -> str | None:
        return str(raw[key]) if key in raw else fallback

    return Resources(
        cpu=q("cpu", base.cpu),
        memory=q("memory", base.memory),
        gpu=int(raw["gpu"]) if "gpu" in raw else base.gpu,
        cpu_limit=q("cpuLimit", base.cpu_limit),
        memory_limit=q("memoryLimit", base.memory_limit),
    )


_QUANTITY = re.compile(r"([0-9.eE+-]+?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")
_SUFFIX = {"": Decimal(1), "m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
           "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18, "Ki": Decimal(2) ** 10,
           "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60}


def quantity(value: str) -> Decimal | None:
    """The amount a Kubernetes quantity (as the schema admits it) stands for; None if unreadable."""
    match = _QUANTITY.fullmatch(value)
    if match is None:
        return None
    try:
        return Decimal(match.group(1)) * _SUFFIX[match.group(2) or ""]
    except InvalidOperation:
        return None


# (request field, limit field, the limit's YAML key, what): a limit below its request is a 422
_REQUEST_LIMIT = (("cpu", "cpu_limit", "cpuLimit", "CPU"), ("memory", "memory_limit", "memoryLimit", "memory"))


def limits_below_requests(layers: list[tuple[str, Resources]]) -> Iterator[str]:
    """Each request that the layered resources (most specific first: Model, ServingRuntime,
    repo defaults; each field from the first layer that sets it) put above its limit, naming
    the layer each value came from. The API server refuses such a container."""
    for request_attr, limit_attr, limit_key, what in _REQUEST_LIMIT:
        request = next(((v, who) for who, layer in layers if (v := getattr(layer, request_attr)) is not None), None)
        limit = next(((v, who) for who, layer in layers if (v := getattr(layer, limit_attr)) is not None), None)
        if request is None or limit is None:
            continue
        amount, cap = quantity(request[0]), quantity(limit[0])
        if amount is not None and cap is not None and amount > cap:
            yield (f"the {what} request {request[0]} ({request[1]}) is above the {what} limit {limit[0]} ({limit[1]}): "
                   f"the API server would refuse the container; set {limit_key} (or lower the request)")
