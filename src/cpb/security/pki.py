"""A certificate authority per project, made with the `cryptography` package.

Where the keys live: ``$XDG_STATE_HOME/cpb/pki/<id>/`` (default
``~/.local/state/cpb/pki/<id>/``), ``<id>`` the first 16 hex digits of the
sha256 of the project's real path. Not under the project: a project is
written by a stranger, and a committed ``.cpb/`` could plant a CA (or a
symbolic link) there; and not in any image's build context or under
``.cpb/build/``, so no key can reach an image layer. ``CPB_PKI_DIR`` chooses
another folder (tests). The folder is 0700, every key 0600; a key file
another user may read is refused, never silently re-chmodded.

Roles and their certificate subjects (nats-server's ``verify_and_map`` maps
the subject, RFC 2253, to an ``authorization`` user): ``CN=cp-nats`` (the
server), ``CN=cp-majordomo``, ``CN=cp-worker-<kind>``, ``CN=cp-submitter``.
Leaves live 90 days and are renewed when less than 30 remain; the CA lives
10 years. ``rotate()`` makes a new CA, so every old certificate is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cpb.errors import CpbError

if TYPE_CHECKING:  # imported where used: a plan of a project without pods never needs it
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

LEAF_DAYS = 90
RENEW_DAYS = 30  # renew a leaf with fewer days left than this
CA_DAYS = 3650
SERVER_ROLE = "nats"
MAJORDOMO_ROLE = "majordomo"
SUBMITTER_ROLE = "submitter"


class PkiError(CpbError):
    """The key folder is unsafe or unreadable."""

    exit_code = 3


def worker_role(kind: str) -> str:
    return f"worker-{kind}"


def subject_cn(role: str) -> str:
    return f"cp-{role}"


def user_of(role: str) -> str:
    """The authorization user nats-server maps a role's certificate to."""
    return f"CN={subject_cn(role)}"


def default_folder(project_root: Path, env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    if env.get("CPB_PKI_DIR"):
        return Path(env["CPB_PKI_DIR"])
    state = Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    key = hashlib.sha256(str(project_root.resolve()).encode()).hexdigest()[:16]
    return state / "cpb" / "pki" / key


@dataclass(frozen=True)
class RoleFiles:
    role: str
    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class Pki:
    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    def files(self, role: str) -> RoleFiles:
        return RoleFiles(role, self.folder / f"{role}.crt", self.folder / f"{role}.key",
                         self.ca_cert)

    # -- making -----------------------------------------------------------

    def ensure(self, roles: Iterable[str], server_names: Iterable[str] = (),
               now: dt.datetime | None = None, *, server: bool = True) -> dict[str, str]:
        """Make the CA and every role's certificate that is missing, expiring within
        RENEW_DAYS, not signed by the current CA, or (the server's) lacking a name.
        Returns each role's certificate sha256 (an input of the pod digest).
        ``server=False`` leaves the server's certificate alone (`cpb submit`)."""
        now = now or dt.datetime.now(dt.timezone.utc)
        self._prepare_folder()
        ca_key, ca_cert = self._ca(now)
        names = tuple(sorted(set(server_names) | {"localhost", "127.0.0.1"}))
        out = {}
        for role in sorted(set(roles) | ({SERVER_ROLE} if server else set())):
            want = names if role == SERVER_ROLE else ()
            files = self.files(role)
            cert = _load_cert(files.cert) if files.cert.exists() and files.key.exists() else None
            if cert is None or not _good(cert, ca_cert, now, want):
                self.issue(role, ca_key, ca_cert, now, want)
            else:
                check_key_mode(files.key)
            out[role] = hashlib.sha256(files.cert.read_bytes()).hexdigest()
        out["ca"] = hashlib.sha256(self.ca_cert.read_bytes()).hexdigest()
        return out

    def fingerprints(self, roles: Iterable[str], server_names: Iterable[str] = (),
                     now: dt.datetime | None = None) -> dict[str, str]:
        """What ensure() would return, without writing anything (`cpb plan`): a role
        whose certificate ensure() would (re)issue is "" (to be issued)."""
        now = now or dt.datetime.now(dt.timezone.utc)
        ca_cert = _load_cert(self.ca_cert) if self.ca_key.exists() else None
        if ca_cert is None or ca_cert.not_valid_after_utc <= now + dt.timedelta(days=LEAF_DAYS):
            return {role: "" for role in sorted(set(roles) | {SERVER_ROLE, "ca"})}
        names = tuple(sorted(set(server_names) | {"localhost", "127.0.0.1"}))
        out = {}
        for role in sorted(set(roles) | {SERVER_ROLE}):
            files = self.files(role)
            cert = _load_cert(files.cert) if files.cert.exists() and files.key.exists() else None
            good = cert is not None and _good(cert, ca_cert, now,
                                              names if role == SERVER_ROLE else ())
            out[role] = hashlib.sha256(files.cert.read_bytes()).hexdigest() if good else ""
        out["ca"] = hashlib.sha256(self.ca_cert.read_bytes()).hexdigest()
        return out

    def issue(self, role: str, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
              now: dt.datetime, names: tuple[str, ...] = (), days: int = LEAF_DAYS,
              not_before: dt.datetime | None = None) -> RoleFiles:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or now - dt.timedelta(minutes=5)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                               subject_cn(role))]))
                   .issuer_name(ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                   .add_extension(x509.ExtendedKeyUsage(
                       [ExtendedKeyUsageOID.SERVER_AUTH if role == SERVER_ROLE
                        else ExtendedKeyUsageOID.CLIENT_AUTH]), False))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [_general_name(n) for n in names]), False)
        cert = builder.sign(ca_key, hashes.SHA256())
        files = self.files(role)
        _write(files.key, _key_pem(key), 0o600)
        _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return files

    def rotate(self) -> None:
        """A new CA and new leaves on the next ensure(): every old certificate is refused."""
        self._prepare_folder()
        for path in self.folder.iterdir():
            if path.suffix in (".crt", ".key"):
                path.unlink()

    def ca(self, now: dt.datetime | None = None
           ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        self._prepare_folder()
        return self._ca(now or dt.datetime.now(dt.timezone.utc))

    def _ca(self, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        if self.ca_key.exists() and self.ca_cert.exists():
            check_key_mode(self.ca_key)
            key = serialization.load_pem_private_key(self.ca_key.read_bytes(), None)
            cert = _load_cert(self.ca_cert)
            if isinstance(key, ec.EllipticCurvePrivateKey) and cert is not None \
                    and cert.not_valid_after_utc > now + dt.timedelta(days=LEAF_DAYS):
                return key, cert
        return self._new_ca(now)

    def _new_ca(self, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                             f"cpb project CA {self.folder.name}")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                             crl_sign=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, encipher_only=False,
                                             decipher_only=False), True)
                .sign(key, hashes.SHA256()))
        _write(self.ca_key, _key_pem(key), 0o600)
        _write(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return key, cert

    def _prepare_folder(self) -> None:
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.folder.lstat()
        except OSError as exc:
            raise PkiError(f"cannot make the key folder {self.folder}: {exc}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise PkiError(f"{self.folder}: the key folder is not a directory")
        if info.st_uid != os.getuid():
            raise PkiError(f"{self.folder}: the key folder belongs to another user")
        if info.st_mode & 0o077:
            raise PkiError(f"{self.folder}: the key folder is mode "
                           f"{stat.S_IMODE(info.st_mode):04o}; others must not reach it: "
                           f"chmod 700 {self.folder} (or `cpb pki rotate`)")


def check_key_mode(path: Path) -> None:
    """Refuse a key that another user could have read: it is no longer secret."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise PkiError(f"{path}: a private key must be a regular file")
    if info.st_mode & 0o077:
        raise PkiError(f"{path}: private key is mode {stat.S_IMODE(info.st_mode):04o}, "
                       "readable by others; it may have leaked: run `cpb pki rotate` "
                       "to make new keys")


def _good(cert: x509.Certificate, ca: x509.Certificate, now: dt.datetime,
          names: tuple[str, ...]) -> bool:
    from cryptography import x509

    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # another CA's key (after a rotation)
        return False
    if cert.not_valid_after_utc - now < dt.timedelta(days=RENEW_DAYS):
        return False
    if names:
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        have = {str(v) for v in san.get_values_for_type(x509.DNSName)} | \
               {str(v) for v in san.get_values_for_type(x509.IPAddress)}
        if set(names) - have:
            return False
    return True


def _general_name(name: str) -> x509.GeneralName:
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _load_cert(path: Path) -> x509.Certificate | None:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int) -> None:
    """Atomically, created with its final mode (a key is never briefly world-readable)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
