"""CURVE: an authorised client decodes the stream, anyone else gets nothing."""

from __future__ import annotations

import time

import pytest

from tests.tracker.stream.helpers import LOOPBACK_ANY, assert_exact, random_result
from tracker.core.errors import ConfigError
from tracker.stream import Publisher, Subscriber
from tracker.stream.curve import generate_keys, load_client_keys


def test_curve_stream_refuses_clients_without_the_key(tmp_path, rng):
    keys = tmp_path / "keys"
    paths = generate_keys(keys)
    assert paths["server_secret"].stat().st_mode & 0o077 == 0  # secrets are private to the user
    assert (keys / "authorized_clients" / "client.key").exists()
    # An intruder with a keypair of its own and the server's public key (which is not secret).
    intruder = tmp_path / "intruder"
    generate_keys(intruder, clients=("client",))
    (intruder / "server.key").write_bytes((keys / "server.key").read_bytes())

    sent = [random_result(rng, i) for i in range(200)]
    with Publisher(LOOPBACK_ANY, curve_keys_dir=keys) as pub:
        good = Subscriber(pub.endpoint, curve_keys_dir=keys)
        plain = Subscriber(pub.endpoint)
        wrong = Subscriber(pub.endpoint, curve_keys_dir=intruder)
        try:
            got, got_plain, got_wrong = [], 0, 0
            for r in sent:
                pub.publish(r)
                msg = good.recv(5)
                if msg is not None:
                    got.append(msg)
                got_plain += plain.recv_raw(0) is not None
                got_wrong += wrong.recv_raw(0) is not None
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                got_plain += plain.recv_raw(10) is not None
                got_wrong += wrong.recv_raw(10) is not None
            stats = pub.stats()
        finally:
            for s in (good, plain, wrong):
                s.close()
    assert len(got) >= 150  # the first few go out before the handshake completes
    by_frame = {r.frame_index: r for r in sent}
    for msg in got:
        assert_exact(by_frame[msg.result.frame_index], msg)
    assert got_plain == 0 and got_wrong == 0
    assert stats.subscriptions == 1  # only the authenticated client ever subscribed


def test_missing_keys_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="keygen"):
        load_client_keys(tmp_path)
    with pytest.raises(ConfigError, match="keygen"):
        Publisher(LOOPBACK_ANY, curve_keys_dir=tmp_path).start()
