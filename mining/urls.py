"""Which URLs the fetchers may request: http(s) only, and only public addresses unless allowed.

Both fetchers (images through img2dataset, videos through yt-dlp) check their whole URL list
here before any request, so that a list cannot make a run read local files (`file://`), talk
other protocols (`ftp://`), or reach this machine or a private network (loopback, private,
link-local, reserved addresses) by accident. Hosts are resolved with `socket.getaddrinfo` and
nothing else; a host that does not resolve passes, since its fetch fails and is recorded.

The check runs once, before fetching: a host whose DNS answer changes between the check and the
fetch is not caught here.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from mining.images import InputError

ALLOWED_SCHEMES = ("http", "https")
SHOWN = 5  # refused URLs named in an error message

_DEFAULT_PORTS = {"http": 80, "https": 443}
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address_kind(ip: Address) -> str | None:
    """What kind of non-public address `ip` is, or None for a public one."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind in ("loopback", "unspecified", "link_local", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    if not ip.is_global:  # shared (CGNAT), documentation and similar ranges
        return "non-public"
    return None


def _resolve(host: str, port: int) -> list[Address]:
    """The addresses `host` resolves to; empty when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        return []
    addresses = []
    for info in infos:
        try:
            addresses.append(ipaddress.ip_address(info[4][0].split("%")[0]))
        except ValueError:
            continue
    return addresses


def _split(url: object) -> tuple[str, int] | str:
    """(host, port) of an http(s) URL, or why the URL is refused whatever the addresses."""
    if not isinstance(url, str) or not url.strip():
        return "empty URL"
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as err:
        return f"malformed URL ({err})"
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = f"scheme {scheme!r}" if scheme else "no scheme"
        return f"{shown}, not http or https"
    if not parts.hostname:
        return "no host"
    return parts.hostname, port or _DEFAULT_PORTS[scheme]


def _host_problem(host: str, addresses: list[Address]) -> str | None:
    for ip in addresses:
        kind = _address_kind(ip)
        if kind is not None:
            shown = host if host == str(ip) else f"{host} ({ip})"
            return f"host {shown} is a {kind} address"
    return None


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None


def _refused(problems: list[tuple[str, str]], total: int) -> InputError:
    shown = "; ".join(f"{url!r} ({why})" for url, why in problems[:SHOWN])
    more = f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    what = "the URL" if total == 1 else f"{len(problems)} of {total} URLs"
    advice = []
    if any("address" in why for _, why in problems):
        advice.append(
            "to fetch from a server on this machine or a private network, allow those "
            "addresses with fetch.allow_private=true (e.g. --set fetch.allow_private=true)"
        )
    if any("address" not in why for _, why in problems):
        advice.append("fix or remove the rows whose URL is not an http(s) URL with a host")
    return InputError(
        f"refused {what}: {shown}{more}. Only http(s) URLs to public addresses are fetched; "
        + "; ".join(advice)
        + "."
    )


def check_urls(urls: Iterable[object], allow_private: bool, *, resolvers: int = 32) -> None:
    """Refuse a URL list with any URL that must not be fetched, before fetching any of it.

    Only http and https URLs with a host pass. Unless `allow_private`, a host given as, or
    resolving to, a loopback, private, link-local, multicast or reserved address is refused too;
    hostnames are resolved once each, `resolvers` at a time.

    Raises:
        InputError: naming the first few refused URLs, why each is refused, and what to do.
    """
    urls = list(urls)
    split = [_split(url) for url in urls]

    resolved: dict[tuple[str, int], list[Address]] = {}
    if not allow_private:
        for entry in split:
            if isinstance(entry, tuple) and entry not in resolved:
                literal = _literal(entry[0])
                resolved[entry] = [literal] if literal is not None else []
        names = [hp for hp, addresses in resolved.items() if not addresses]
        if names:
            with ThreadPoolExecutor(max_workers=max(1, min(resolvers, len(names)))) as pool:
                for hp, addresses in zip(names, pool.map(lambda hp: _resolve(*hp), names)):
                    resolved[hp] = addresses

    problems = []
    for url, entry in zip(urls, split):
        why = entry if isinstance(entry, str) else None
        if why is None and not allow_private:
            why = _host_problem(entry[0], resolved[entry])
        if why is not None:
            problems.append((str(url), why))
    if problems:
        raise _refused(problems, len(urls))


def check_url(url: str, allow_private: bool) -> None:
    """`check_urls` for one URL: raises InputError saying why `url` must not be fetched."""
    check_urls([url], allow_private, resolvers=1)
