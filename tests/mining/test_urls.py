"""The URL check both fetchers run before any request: schemes, and non-public addresses."""

from __future__ import annotations

import socket

import pytest

from mining.images import InputError
from mining.urls import check_url, check_urls


@pytest.mark.parametrize(
    "url",
    ["http://93.184.216.34/a.jpg", "https://93.184.216.34:8443/a/b.jpg?x=1", "HTTP://1.1.1.1/x"],
)
def test_public_http_urls_pass(url: str):
    check_url(url, allow_private=False)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/passwd", "scheme 'file', not http or https"),
        ("ftp://93.184.216.34/a.jpg", "scheme 'ftp', not http or https"),
        ("data:image/png;base64,AAAA", "scheme 'data', not http or https"),
        ("93.184.216.34/a.jpg", "no scheme, not http or https"),
        ("http:///a.jpg", "no host"),
        ("http://93.184.216.34:99999/a.jpg", "malformed URL"),
        ("", "empty URL"),
    ],
)
def test_non_http_urls_are_refused_even_when_private_is_allowed(url: str, why: str):
    with pytest.raises(InputError) as err:
        check_url(url, allow_private=True)
    message = str(err.value)
    assert repr(url) in message and why in message
    assert "fix or remove the rows" in message
    assert "allow_private" not in message  # allowing addresses would not help


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:8000/a.jpg", "loopback"),
        ("http://[::1]/a.jpg", "loopback"),
        ("http://[::ffff:127.0.0.1]/a.jpg", "loopback"),
        ("http://localhost/a.jpg", "loopback"),
        ("http://2130706433/a.jpg", "loopback"),  # 127.0.0.1 written as one number
        ("http://10.0.0.1/a.jpg", "private"),
        ("http://192.168.1.20/a.jpg", "private"),
        ("http://[fd00::5]/a.jpg", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://0.0.0.0/a.jpg", "unspecified"),
        ("http://224.0.0.1/a.jpg", "multicast"),
        ("http://100.64.0.7/a.jpg", "non-public"),
    ],
)
def test_non_public_addresses_are_refused_unless_allowed(url: str, kind: str):
    with pytest.raises(InputError) as err:
        check_url(url, allow_private=False)
    message = str(err.value)
    assert repr(url) in message and f"a {kind} address" in message
    assert "--set fetch.allow_private=true" in message

    check_url(url, allow_private=True)


def test_hostnames_are_resolved_once_each(monkeypatch: pytest.MonkeyPatch):
    answers = {"cdn.example": "93.184.216.34", "intranet.example": "10.1.2.3"}
    asked: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        asked.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    public = [f"https://cdn.example/{i}.jpg" for i in range(3)]
    check_urls(public + ["http://gone.example/x.jpg"], allow_private=False)  # gone: fails later
    assert sorted(asked) == ["cdn.example", "gone.example"]

    with pytest.raises(InputError, match=r"host intranet\.example \(10\.1\.2\.3\) is a private"):
        check_urls(public + ["http://intranet.example/x.jpg"], allow_private=False)

    asked.clear()
    check_urls(public + ["http://intranet.example/x.jpg"], allow_private=True)
    assert asked == []  # nothing to resolve when every address is allowed


def test_list_message_names_the_first_few_and_counts_the_rest():
    urls = ["http://93.184.216.34/ok.jpg"] + [f"http://10.0.0.{i}/a.jpg" for i in range(1, 9)]
    with pytest.raises(InputError) as err:
        check_urls(urls + ["file:///x"], allow_private=False)
    message = str(err.value)
    assert message.startswith("refused 9 of 10 URLs: 'http://10.0.0.1/a.jpg' (host 10.0.0.1")
    assert "http://10.0.0.5/a.jpg" in message and "http://10.0.0.6/a.jpg" not in message
    assert "and 4 more" in message
    assert "allow_private" in message and "fix or remove the rows" in message


def test_missing_url_values_are_refused():
    with pytest.raises(InputError, match="empty URL"):
        check_urls(["http://93.184.216.34/a.jpg", None], allow_private=True)
