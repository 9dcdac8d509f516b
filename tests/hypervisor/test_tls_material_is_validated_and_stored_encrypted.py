"""qemu+tls hosts: the CA, client certificate and key an admin uploads are validated, the key is stored
encrypted, and a worker writes them to private files only to hand libvirt a pkipath."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.core.exceptions import ValidationError

from hypervisor import connection, credentials, hosts, secrets
from hypervisor.hosts import TLSMaterial
from hypervisor.models import Host
from tests import factories

pytestmark = pytest.mark.django_db

URI = "qemu+tls://127.0.0.1:1/system"  # nothing listens on port 1


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def pki() -> TLSMaterial:
    """A CA and a client certificate signed by it, made as libvirt's TLS setup guide asks."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Test CA"))
        .issuer_name(_name("Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    client_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client = (
        x509.CertificateBuilder()
        .subject_name(_name("panel"))
        .issuer_name(ca.subject)
        .public_key(client_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = client_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return TLSMaterial(ca_cert=_pem(ca), client_cert=_pem(client), client_key=key_pem)


@pytest.fixture
def data_dir(settings, tmp_path) -> Path:
    settings.DATA_DIR = tmp_path
    return tmp_path


def test_the_client_key_is_stored_encrypted_and_the_certificates_as_given(pki, data_dir):
    host = hosts.register_host("tls1", URI, factories.make_region(), tls=pki)
    stored = Host.objects.get(pk=host.pk)
    assert stored.tls_client_key.startswith("fernet:")
    assert "PRIVATE KEY" not in stored.tls_client_key
    assert secrets.decrypt(stored.tls_client_key) == pki.client_key
    assert (stored.tls_ca_cert, stored.tls_client_cert) == (pki.ca_cert, pki.client_cert)
    assert stored.state == Host.State.NEW


def test_the_worker_hands_libvirt_a_private_pkipath_with_the_uploaded_files(pki, data_dir):
    host = hosts.register_host("tls1", URI, factories.make_region(), tls=pki)
    uri = credentials.connect_uri(host)
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc, parts.path) == ("qemu+tls", "127.0.0.1:1", "/system")
    pkipath = Path(parse_qs(parts.query)["pkipath"][0])
    assert pkipath == data_dir / "run" / "hosts" / str(host.pk)
    assert stat.S_IMODE(pkipath.stat().st_mode) == 0o700
    expected = {"cacert.pem": pki.ca_cert, "clientcert.pem": pki.client_cert, "clientkey.pem": pki.client_key}
    assert sorted(p.name for p in pkipath.iterdir()) == sorted(expected)
    for name, content in expected.items():
        assert (pkipath / name).read_text() == content
        assert stat.S_IMODE((pkipath / name).stat().st_mode) == 0o600, name
    assert credentials.connect_uri(host) == uri  # writing again is harmless


def test_probing_an_unreachable_tls_host_ends_in_error_with_a_readable_reason(pki, data_dir):
    host = hosts.register_host("tls1", URI, factories.make_region(), tls=pki)
    host = hosts.probe_host(host.pk)
    connection.forget(host.uri)
    assert host.state == Host.State.ERROR
    # libvirt accepted the uploaded PKI files and got as far as connecting.
    assert host.status_reason == "connection refused by 127.0.0.1:1"
    assert host.last_probed_at is not None


GARBAGE = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    "broken,message",
    [
        (dict(ca_cert="not a certificate"), "The CA or client certificate is not a PEM certificate."),
        (dict(client_cert=GARBAGE), "The CA or client certificate is not a PEM certificate."),
        (dict(client_key="garbage"), "The client key is not an unencrypted PEM private key."),
    ],
    ids=["ca", "client-cert", "client-key"],
)
def test_garbage_tls_material_is_refused_and_nothing_is_stored(pki, broken, message):
    material = TLSMaterial(**{**pki.__dict__, **broken})
    with pytest.raises(ValidationError) as raised:
        hosts.register_host("tls1", URI, factories.make_region(), tls=material)
    assert raised.value.code == "invalid_tls"
    assert raised.value.messages == [message]
    assert not Host.objects.exists()


def test_a_password_protected_client_key_is_refused(pki):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(pki.client_key.encode(), password=None)
    locked = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    ).decode()
    with pytest.raises(ValidationError) as raised:
        hosts.register_host(
            "tls1", URI, factories.make_region(), tls=TLSMaterial(pki.ca_cert, pki.client_cert, locked)
        )
    assert raised.value.messages == ["The client key is not an unencrypted PEM private key."]


def test_a_tls_host_without_its_material_is_refused():
    with pytest.raises(ValidationError) as raised:
        hosts.register_host("tls1", URI, factories.make_region())
    assert raised.value.code == "invalid_tls"
    assert "needs the CA certificate, the client certificate and the client key" in raised.value.messages[0]
    assert not Host.objects.exists()


# Encryption at rest.


@pytest.fixture
def fresh_keys():
    secrets._fernet.cache_clear()
    yield
    secrets._fernet.cache_clear()


def test_secrets_roundtrip_and_are_not_readable_in_the_database(settings, fresh_keys):
    settings.PANEL_ENCRYPTION_KEY = "a long random string for the tests"
    stored = secrets.encrypt("-----BEGIN PRIVATE KEY-----\nabc\n")
    assert stored.startswith("fernet:") and "PRIVATE" not in stored
    assert secrets.decrypt(stored) == "-----BEGIN PRIVATE KEY-----\nabc\n"
    assert secrets.encrypt("same") != secrets.encrypt("same")  # a fresh IV every time
    assert secrets.encrypt("") == "" and secrets.decrypt("") == ""


def test_a_changed_encryption_key_makes_stored_secrets_unreadable(settings, fresh_keys):
    settings.PANEL_ENCRYPTION_KEY = "the first key"
    stored = secrets.encrypt("private")
    settings.PANEL_ENCRYPTION_KEY = "another key"
    secrets._fernet.cache_clear()
    with pytest.raises(secrets.SecretUnreadable, match="cannot be decrypted with the current key"):
        secrets.decrypt(stored)
    with pytest.raises(secrets.SecretUnreadable, match="not an encrypted secret"):
        secrets.decrypt("plain text")
    settings.PANEL_ENCRYPTION_KEY = "the first key"
    assert secrets.decrypt(stored) == "private"


def test_without_a_panel_encryption_key_the_secret_key_is_used(settings, fresh_keys):
    settings.PANEL_ENCRYPTION_KEY = ""
    stored = secrets.encrypt("private")
    settings.SECRET_KEY = "another secret key"
    with pytest.raises(secrets.SecretUnreadable):
        secrets.decrypt(stored)


def test_a_host_whose_key_cannot_be_decrypted_ends_in_error_with_the_reason(
    pki, data_dir, settings, fresh_keys
):
    settings.PANEL_ENCRYPTION_KEY = "the first key"
    host = hosts.register_host("tls1", URI, factories.make_region(), tls=pki)
    settings.PANEL_ENCRYPTION_KEY = "another key"
    host = hosts.probe_host(host.pk)
    assert host.state == Host.State.ERROR
    assert host.status_reason == (
        "cannot prepare the connection: the stored secret cannot be decrypted with the current key"
    )
    assert not (data_dir / "run" / "hosts" / str(host.pk) / "clientkey.pem").exists()
