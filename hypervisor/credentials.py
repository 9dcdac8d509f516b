"""How the panel reaches a host: its own SSH key pair, recorded host keys, TLS material, and the libvirt
URI with the parameters that use them.

Secrets live encrypted in the database; a worker writes them to private files (mode 0600 in a 0700
directory under PANEL_DATA_DIR/run) only when it connects, because libvirt reads them from files.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.db import IntegrityError, transaction

from . import secrets
from .models import Host, PanelKeyPair

KEY_COMMENT = "vpspanel"


def panel_key_pair() -> PanelKeyPair:
    """The panel's SSH key pair, generated on first use."""
    pair = PanelKeyPair.objects.filter(name="default").first()
    if pair is not None:
        return pair
    private = Ed25519PrivateKey.generate()
    private_text = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public_text = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    try:
        with transaction.atomic():
            return PanelKeyPair.objects.create(
                name="default",
                public_key=f"{public_text.decode()} {KEY_COMMENT}",
                private_key=secrets.encrypt(private_text),
            )
    except IntegrityError:  # another process generated it first
        return PanelKeyPair.objects.get(name="default")


def authorized_keys_line() -> str:
    """The exact line an admin adds to the host user's ~/.ssh/authorized_keys."""
    return panel_key_pair().public_key


def ssh_target(uri: str) -> tuple[str, int, str]:
    """(host, port, user) of a qemu+ssh:// URI."""
    parts = urlsplit(uri)
    return parts.hostname or "", parts.port or 22, parts.username or "root"


def scan_host_keys(uri: str, timeout: int = 5) -> str:
    """The host's SSH public keys in known_hosts format (ssh-keyscan), recorded at onboarding."""
    host, port, _user = ssh_target(uri)
    return scan_ssh_host_keys(host, port, timeout)


def scan_ssh_host_keys(host: str, port: int = 22, timeout: int = 5) -> str:
    """The SSH server's public keys in known_hosts format (ssh-keyscan); empty when none answer."""
    if not host or host.startswith("-"):
        raise ValueError(f"not a host name: {host!r}")  # validate_uri refuses these; never an option
    result = subprocess.run(
        ["ssh-keyscan", "-T", str(timeout), "-p", str(port), "--", host],
        capture_output=True,
        text=True,
        timeout=timeout * 3,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line and not line.startswith("#")]
    return "\n".join(sorted(lines)) + ("\n" if lines else "")


def host_key_fingerprints(known_hosts: str) -> list[str]:
    """`ssh-keygen -l` style fingerprints of recorded host keys."""
    import base64

    fingerprints = []
    for line in known_hosts.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            digest = hashlib.sha256(base64.b64decode(parts[2])).digest()
            fingerprints.append(f"{parts[1]} SHA256:{base64.b64encode(digest).decode().rstrip('=')}")
    return fingerprints


def _private_dir(host: Host) -> Path:
    return private_dir("hosts", str(host.pk))


def private_dir(*parts: str) -> Path:
    """A private directory (mode 0700) under PANEL_DATA_DIR/run for files libvirt or ssh read."""
    path = Path(settings.DATA_DIR) / "run" / Path(*parts)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _write(path: Path, content: str, mode: int = 0o600) -> None:
    if path.exists() and path.read_text() == content:
        return
    temporary = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def _with_params(uri: str, **params: str) -> str:
    parts = urlsplit(uri)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _ssh_files(host: Host) -> tuple[Path, list[str]]:
    """The panel's private key file for the host and the ssh options that pin its recorded host keys (the
    files are written, private, when missing or changed)."""
    return ssh_key_files(_private_dir(host), host.ssh_host_keys)


def ssh_key_files(directory: Path, known_hosts_text: str) -> tuple[Path, list[str]]:
    """The panel's private key file in `directory` and the ssh options that accept only the host keys in
    `known_hosts_text` (known_hosts lines); the files are written, private, when missing or changed."""
    key_file = directory / "id_ed25519"
    known_hosts = directory / "known_hosts"
    _write(key_file, secrets.decrypt(panel_key_pair().private_key))
    _write(known_hosts, known_hosts_text)
    options = [
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=10",
        "-o", "ServerAliveInterval=10",
    ]  # fmt: skip
    return key_file, options


def ssh_tunnel_command(host: Host, address: str, port: int) -> list[str]:
    """The command that connects to `address:port` as seen from a qemu+ssh host, through ssh with the
    panel's key (`ssh -W`: its standard input and output are the connection); what the console proxy
    uses to reach a VNC server listening on the host's loopback."""
    target, ssh_port, user = ssh_target(host.uri)
    if not target or target.startswith("-"):
        raise ValueError(f"not a host name: {target!r}")
    key_file, options = _ssh_files(host)
    return ["ssh", *options, "-i", str(key_file), "-p", str(ssh_port), "-l", user,
            "-W", f"{address}:{port}", "--", target]  # fmt: skip


def connect_uri(host: Host) -> str:
    """The URI libvirt opens for this host, with key files, known hosts or PKI paths filled in."""
    if host.transport == "qemu+ssh":
        key_file, options = _ssh_files(host)
        # libvirt's ssh transport runs `command`; the wrapper pins the recorded host keys.
        wrapper = _private_dir(host) / "ssh"
        # libvirt keeps only 1 KiB of the command's error output, and ssh's warnings are long (a changed
        # host key names the known_hosts path three times): pass on the end of it, where the reason is.
        script = f'#!/bin/sh\n{{ ssh {shlex.join(options)} "$@" 2>&1 1>&3 3>&- | tail -c 512 1>&2; }} 3>&1\n'
        _write(wrapper, script, 0o700)
        return _with_params(host.uri, keyfile=str(key_file), command=str(wrapper), no_tty="1")
    if host.transport == "qemu+tls" and host.tls_ca_cert:
        directory = _private_dir(host)
        _write(directory / "cacert.pem", host.tls_ca_cert)
        _write(directory / "clientcert.pem", host.tls_client_cert)
        _write(directory / "clientkey.pem", secrets.decrypt(host.tls_client_key))
        return _with_params(host.uri, pkipath=str(directory))
    return host.uri
