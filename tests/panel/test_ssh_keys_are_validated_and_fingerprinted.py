"""OpenSSH public keys: validated, fingerprinted like ssh-keygen, private to their owner."""

import subprocess

import pytest
from django.core.exceptions import ValidationError

from panel.accounts.openssh import parse_public_key
from panel.models import SSHKey
from tests.factories import ED25519_FINGERPRINT, ED25519_KEY


def test_the_fingerprint_matches_ssh_keygen():
    assert parse_public_key(ED25519_KEY).fingerprint == ED25519_FINGERPRINT


@pytest.mark.parametrize("bits", [2048, 3072])
def test_fresh_rsa_keys_are_accepted_with_ssh_keygens_fingerprint(tmp_path, bits):
    path = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", str(bits), "-N", "", "-f", str(path)], check=True)
    public = (tmp_path / "id.pub").read_text()
    expected = subprocess.run(
        ["ssh-keygen", "-lf", str(tmp_path / "id.pub")], check=True, capture_output=True, text=True
    ).stdout.split()[1]
    assert parse_public_key(public).fingerprint == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "ssh-ed25519",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP== x",
        "ssh-ed25519 !!!notbase64!!!",
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIAmYSsP7tsmNYQr9eRfzsXsa8jbCuwzfwY+y1TO5YLfo mismatched-type",
    ],
)
def test_garbage_is_rejected_with_a_message(text):
    with pytest.raises(ValidationError) as info:
        parse_public_key(text)
    assert info.value.messages[0]


def test_short_rsa_keys_are_rejected(tmp_path):
    path = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", str(path)], check=True)
    with pytest.raises(ValidationError, match="2048"):
        parse_public_key((tmp_path / "id.pub").read_text())


@pytest.mark.django_db
def test_the_api_adds_lists_and_deletes_keys(api, customer):
    client = api(customer)
    response = client.post(
        "/api/v1/ssh-keys/", {"name": "laptop", "public_key": ED25519_KEY + "\n"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["fingerprint"] == ED25519_FINGERPRINT
    assert set(body) == {"id", "name", "fingerprint", "public_key"}
    duplicate = client.post("/api/v1/ssh-keys/", {"name": "again", "public_key": ED25519_KEY}, format="json")
    assert duplicate.status_code == 400
    assert "public_key" in duplicate.json()["error"]["fields"]
    bad = client.post("/api/v1/ssh-keys/", {"name": "bad", "public_key": "ssh-rsa nope"}, format="json")
    assert bad.status_code == 400
    assert client.get("/api/v1/ssh-keys/").json()["count"] == 1
    assert client.delete(f"/api/v1/ssh-keys/{body['id']}/").status_code == 204
    assert not SSHKey.objects.exists()


@pytest.mark.django_db
def test_the_web_page_adds_and_removes_keys(client, customer):
    client.force_login(customer)
    response = client.post("/ssh-keys/", {"name": "desk", "public_key": ED25519_KEY})
    assert response.status_code == 302
    key = SSHKey.objects.get(owner=customer)
    assert key.fingerprint == ED25519_FINGERPRINT
    response = client.post("/ssh-keys/", {"name": "junk", "public_key": "garbage"})
    assert response.status_code == 200
    assert "not an OpenSSH public key" in response.content.decode()
    assert client.post(f"/ssh-keys/{key.pk}/delete/", {"confirmed": "yes"}).status_code == 302
    assert not SSHKey.objects.exists()
