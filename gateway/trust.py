"""Which request headers a gateway believes.

``x-flyball-priority`` and ``x-flyball-attempt`` steer enforcement: a shed of retries spares
attempt 0, a throttle of low priorities spares priority 0. Taken from anyone, a retry that claims
to be a first attempt of the most important class walks past both. So they are believed only from
configured networks (``HeaderTrust.networks``: an agent platform behind the gateway, loopback by
default). From anyone else:

- the priority is at best ``untrusted_min_priority`` (a client can make itself less important,
  never more);
- the attempt is at least the number of times the same request id was seen before within
  ``RetryMemory.window_ms`` (a client can claim to be a retry, never hide one). Clients that send
  no request id are counted as first attempts: give them ids (``x-request-id``) or trust them.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field

from gateway.headers import RequestInfo

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, ::1/128"`` -> networks (ValueError names the bad entry)."""
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if part:
            try:
                out.append(ipaddress.ip_network(part, strict=False))
            except ValueError as e:
                raise ValueError(f"trusted network {part!r}: {e}") from None
    return tuple(out)


@dataclass(frozen=True, slots=True)
class HeaderTrust:
    networks: tuple[Network, ...] = field(
        default_factory=lambda: parse_networks("127.0.0.0/8, ::1/128")
    )
    untrusted_min_priority: int = 5

    def trusts(self, host: str | None) -> bool:
        if not host:
            return False
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in n for n in self.networks)


class RetryMemory:
    """Request ids seen lately (at most ``max_ids``, each for ``window_ms``): how many times an
    id was seen before is the least attempt number its request can have."""

    def __init__(self, window_ms: int = 60_000, max_ids: int = 100_000) -> None:
        self.window_ms = window_ms
        self.max_ids = max_ids
        self._seen: OrderedDict[str, tuple[int, int]] = OrderedDict()  # id -> (count, last_ms)

    def __len__(self) -> int:
        return len(self._seen)

    def sightings(self, request_id: str, now_ms: int) -> int:
        """Times ``request_id`` was seen within the window before now; records this one."""
        if not request_id:
            return 0
        seen = self._seen
        while seen:  # expire from the oldest
            oldest, (_, last) = next(iter(seen.items()))
            if now_ms - last <= self.window_ms and len(seen) < self.max_ids:
                break
            del seen[oldest]
        count, last = seen.pop(request_id, (0, now_ms))
        before = count if now_ms - last <= self.window_ms else 0
        seen[request_id] = (before + 1, now_ms)
        return before


def believed(info: RequestInfo, trusted: bool, trust: HeaderTrust, memory: RetryMemory,
             now_ms: int) -> RequestInfo:
    """``info`` as the gateway may act on it (see the module docstring)."""
    if trusted:
        return info
    priority = max(info.priority, trust.untrusted_min_priority)
    attempt = max(info.attempt, memory.sightings(info.request_id, now_ms))
    if priority == info.priority and attempt == info.attempt:
        return info
    return info._replace(priority=priority, attempt=attempt)
