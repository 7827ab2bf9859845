"""The HTTPS front's test sites under a booted systemd: a throwaway CA (the hospital CA's
stand-in) and the server certificates it signs (EC P-256, valid for a day), two adjacent free
ports, the README's install command, and switching off workers of an earlier module."""

from __future__ import annotations

import datetime
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.booted import BootedSystem
from support.processes import free_port


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("PRH test hospital CA"))
        .issuer_name(_name("PRH test hospital CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    (directory / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def issue(
    directory: Path,
    stem: str,
    name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> None:
    """`<stem>.crt` (for DNS *name*, signed by *ca*) and `<stem>.key` in *directory*."""
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / f"{stem}.key").write_bytes(_pem_key(key))


def two_free_ports() -> tuple[int, int]:
    """server_port and the port above it (the upstream Prefect port), both free now."""
    for _ in range(50):
        port = free_port()
        if port < 65535:
            try:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port + 1))
                return port, port + 1
            except OSError:
                continue
    raise RuntimeError("no two adjacent free ports")


def retire_old_workers(system: BootedSystem) -> None:
    """Switch off workers an earlier module installed for the plain server that this module's
    install replaces (as an operator repoints them): their unit would wait for it forever, and
    a reboot would then never report the system up."""
    listed = system.systemctl("list-unit-files", "--no-legend", "prefect-worker-*.service")
    for line in listed.stdout.splitlines():
        system.systemctl("disable", "--now", line.split()[0], check=True)


def readme_server_command(warehouse: Path) -> str:
    """The install command of the generated README's "Run the server" section."""
    section = (warehouse / "README.md").read_text().split("## Run the server")[1]
    lines = [line for line in section.split("```")[1].splitlines() if "install-server.sh" in line]
    (line,) = lines
    return line.strip()


def install_as_the_readme_says(
    system: BootedSystem, warehouse: Path, pki: Path, leave_out: str = ""
) -> str:
    """The README's install command run as root from the checkout (*leave_out* removed from
    it), with the CA's pair for the server (pki/server.*) where it expects them; its output."""
    for name in ("prefect.crt", "prefect.key"):
        system.copy_in(pki / name.replace("prefect", "server"), f"/root/{name}")
    command = readme_server_command(warehouse).replace(leave_out, "")
    result = system.run(
        ["sh", "-c", command.removeprefix("sudo ")], cwd=str(warehouse), timeout=900
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
