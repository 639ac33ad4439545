"""``serve`` over HTTPS: a self-signed certificate, and clients that verify it (requests, and the
``sparkrunner`` command through REQUESTS_CA_BUNDLE). No job runs here."""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import time

import pytest
import requests

from conftest import SPARKRUNNER
from service_helpers import free_port

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

TOKEN = "tls-token-4b8e1d2f9a7c"


def self_signed(directory) -> tuple:
    """A certificate for 127.0.0.1 and localhost, signed by its own key: (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sparkrunner test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture
def https_service(tmp_path):
    cert, key = self_signed(tmp_path)
    port = free_port()
    config = tmp_path / "sparkrunner.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nservice:\n  tokens: {{ann: {TOKEN}}}\n")
    log = open(tmp_path / "serve.log", "wb")
    server = subprocess.Popen([SPARKRUNNER, "--config", str(config), "serve", "--port", str(port),
                               "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/healthz", verify=str(cert), timeout=2)
                break
            except requests.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.1)
        yield url, cert, tmp_path
    finally:
        server.terminate()
        try:
            server.wait(1)
        except subprocess.TimeoutExpired:  # uvicorn waits out the plain-HTTP test's connection, stuck in its handshake
            server.kill()
            server.wait()


def test_serve_speaks_https_to_a_client_that_verifies_the_certificate(https_service):
    url, cert, tmp_path = https_service
    answer = requests.get(url + "/jobs", headers={"Authorization": f"Bearer {TOKEN}"}, verify=str(cert), timeout=10)
    assert answer.status_code == 200 and answer.json()["total"] == 0
    # The banner says https; the certificate is not trusted unless the client is told to.
    assert f"serving on {url}" in (tmp_path / "serve.log").read_text()
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url + "/healthz", timeout=10)
    # Plain HTTP gets no answer from a TLS port.
    with pytest.raises(requests.ConnectionError):
        requests.get(url.replace("https", "http") + "/healthz", timeout=10)


def test_the_command_line_client_verifies_through_requests_ca_bundle(https_service):
    url, cert, _ = https_service
    env = {**os.environ, "SPARKRUNNER_TOKEN": TOKEN, "REQUESTS_CA_BUNDLE": str(cert)}
    listed = subprocess.run([SPARKRUNNER, "list", "--url", url], env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    env.pop("REQUESTS_CA_BUNDLE")
    refused = subprocess.run([SPARKRUNNER, "list", "--url", url], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 3 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr


def test_a_certificate_without_its_key_is_refused(tmp_path):
    cert, _ = self_signed(tmp_path)
    done = subprocess.run([SPARKRUNNER, "serve", "--data-dir", str(tmp_path / "data"), "--ssl-certfile", str(cert)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--ssl-keyfile" in done.stderr
