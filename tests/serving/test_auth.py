"""Token auth (admin RPCs always protected, data RPCs optionally) and TLS with a test certificate."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serving.auth import Tokens
from serving.client import TrafficClient
from serving.core import RankingCore
from serving.generated.ecorank.v1 import traffic_pb2
from serving.server import ServerOptions
from tests.serving.conftest import ADMIN, ADMIN_TOKEN, candidates, serving, to_request

DATA_TOKEN = "data-test-token"


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()  # type: ignore[operator]
    return raised.value.code()  # type: ignore[no-any-return]


def test_admin_rpcs_need_the_admin_token_and_data_rpcs_the_data_token(core: RankingCore,
                                                                       plan_dirs: tuple[Path, Path]) -> None:
    options = ServerOptions(port=0, model_threads=1, tokens=Tokens(admin=ADMIN_TOKEN, data=DATA_TOKEN))
    reload = traffic_pb2.ReloadRequest(plan_path=str(plan_dirs[1]))
    rank = to_request(candidates(core, 10))
    with serving(core, options) as s:
        assert _code(lambda: s.stub.Reload(reload, timeout=30)) == grpc.StatusCode.UNAUTHENTICATED
        wrong = (("authorization", "Bearer nope"),)
        assert _code(lambda: s.stub.Reload(reload, timeout=30, metadata=wrong)) == grpc.StatusCode.UNAUTHENTICATED
        data = (("authorization", f"Bearer {DATA_TOKEN}"),)
        assert _code(lambda: s.stub.Reload(reload, timeout=30, metadata=data)) == grpc.StatusCode.PERMISSION_DENIED
        assert s.stub.Reload(reload, timeout=30, metadata=ADMIN).plan_version == 2
        assert _code(lambda: s.stub.Rank(rank, timeout=30)) == grpc.StatusCode.UNAUTHENTICATED
        assert _code(lambda: s.stub.Rank(rank, timeout=30, metadata=wrong)) == grpc.StatusCode.UNAUTHENTICATED
        assert sum(s.stub.Rank(rank, timeout=30, metadata=data).weights) == pytest.approx(1.0)
        assert len(s.stub.Rank(rank, timeout=30, metadata=ADMIN).weights) == 10  # admin may rank too
        health = health_pb2_grpc.HealthStub(s.channel)  # probes stay open
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING


def test_without_an_admin_token_reload_is_refused(core: RankingCore, plan_dirs: tuple[Path, Path]) -> None:
    with serving(core, ServerOptions(port=0, model_threads=1)) as s:
        request = traffic_pb2.ReloadRequest(plan_path=str(plan_dirs[1]))
        with pytest.raises(grpc.RpcError) as raised:
            s.stub.Reload(request, timeout=30, metadata=ADMIN)
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "admin RPCs are disabled" in raised.value.details()
        assert core.state.plan_version == 1


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_with_a_test_certificate(core: RankingCore, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    options = ServerOptions(port=0, model_threads=1, tls_cert=cert, tls_key=key)
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with serving(core, options, credentials=credentials) as s:
        with TrafficClient(f"127.0.0.1:{s.port}", root_certificates=cert.read_bytes()) as client:
            x = candidates(core, 30)
            result = client.rank(item_ids=x.item_ids, creator_ids=x.creator_ids, cluster_ids=x.cluster_ids,
                                 original=x.original, features=x.features)
            assert np.array_equal(result.weights, core.rank(x).weights)
        with TrafficClient(f"127.0.0.1:{s.port}", timeout=3) as plaintext:  # a plaintext client gets nowhere
            with pytest.raises(grpc.RpcError) as raised:
                plaintext.model_info()
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_needs_both_files(core: RankingCore, tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    with pytest.raises(ValueError, match="needs both a certificate and its private key"), \
            serving(core, ServerOptions(port=0, tls_cert=cert)):
        pass
