"""Where the API server is and who we are to it: a kubeconfig file, or the pod's service account.

What kubectl users commonly have is read: the cluster's `server`, `certificate-authority` or
`certificate-authority-data`, `insecure-skip-tls-verify` and `tls-server-name`; the user's
`client-certificate(-data)` and `client-key(-data)`, `token` and `tokenFile`. Relative file
names are relative to the kubeconfig's folder, as kubectl reads them. A user that authenticates
through a plugin (`exec`, `auth-provider`), basic auth or impersonation, and a cluster behind
`proxy-url`, are refused with the user's or cluster's name and the field: this tool runs no
plugin commands, and silently connecting as someone else would be worse than stopping.

Token files (a kubeconfig's `tokenFile`, the pod's projected service account token) are read
again for every request, so a rotated token is used as soon as the kubelet writes it.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

_PLUGINS = {
    "exec": "runs a command for its credentials (an `exec` plugin)",
    "auth-provider": "gets its credentials from an `auth-provider` plugin",
}
_UNSUPPORTED_USER = {
    "username": "basic authentication (Kubernetes removed it in 1.19)",
    "password": "basic authentication (Kubernetes removed it in 1.19)",
    "as": "impersonation",
    "as-uid": "impersonation",
    "as-groups": "impersonation",
    "as-user-extra": "impersonation",
}
_FIX = (
    "use a kubeconfig whose user has a token, a tokenFile or a client certificate and key "
    "(e.g. a ServiceAccount token from `kubectl create token`)"
)


class KubeConfigError(ValueError):
    """The API server cannot be reached with what was given (file, context, fields)."""


@dataclass(frozen=True)
class ClusterAccess:
    """How to reach one API server: its URL, the TLS to speak and the credentials to send."""

    server: str  # scheme://host:port, no trailing slash
    source: str  # where it came from, for messages: "kubeconfig PATH, context NAME"
    tls: ssl.SSLContext | None = None  # None for an http:// server
    server_name: str | None = None  # TLS name to verify, when not the server's host
    token: str | None = None
    token_file: Path | None = None  # read again on every request (wins over `token`)
    namespace: str | None = None  # the context's namespace, if it names one

    def authorization(self) -> str | None:
        """The Authorization header's value for the next request, if any."""
        token = self.token
        if self.token_file is not None:
            try:
                token = self.token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise KubeConfigError(
                    f"{self.source}: cannot read the token file {self.token_file}: "
                    f"{exc.strerror or exc}"
                ) from None
        return f"Bearer {token}" if token else None


def load_kubeconfig(path: Path, context: str | None = None) -> ClusterAccess:
    """The API server and credentials of `context` (default: the current context) in `path`."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KubeConfigError(f"kubeconfig {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise KubeConfigError(f"kubeconfig {path} is not YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise KubeConfigError(f"kubeconfig {path} is not a kubeconfig (no mapping at the top)")
    name = context or doc.get("current-context")
    if not name:
        raise KubeConfigError(
            f"kubeconfig {path} has no current-context; pass --context (it has: "
            f"{', '.join(_names(doc, 'contexts')) or 'no contexts'})"
        )
    ctx = _entry(doc, "contexts", "context", str(name), path)
    source = f"kubeconfig {path}, context {name}"
    cluster_name = ctx.get("cluster")
    if not cluster_name:
        raise KubeConfigError(f"{source}: the context names no cluster")
    cluster = _entry(doc, "clusters", "cluster", str(cluster_name), path)
    user_name = ctx.get("user")
    user = _entry(doc, "users", "user", str(user_name), path) if user_name else {}
    base = path.parent
    where = f"kubeconfig {path}, cluster {cluster_name}"
    server = str(cluster.get("server") or "").rstrip("/")
    parts = urlsplit(server)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise KubeConfigError(f"{where}: server {server!r} is not an https:// or http:// URL")
    if cluster.get("proxy-url"):
        raise KubeConfigError(f"{where}: proxy-url is not supported; reach the server directly")

    who = f"kubeconfig {path}, user {user_name}"
    for field, what in _PLUGINS.items():
        if field in user:
            plugin = user[field] if isinstance(user[field], dict) else {}
            named = plugin.get("command") or plugin.get("name")
            raise KubeConfigError(
                f"{who} {what}{f': {named}' if named else ''}, which bond-injector does not run; "
                f"{_FIX}"
            )
    for field, what in _UNSUPPORTED_USER.items():
        if user.get(field):
            raise KubeConfigError(
                f"{who}: `{field}` is set, for {what}, which bond-injector does not support; {_FIX}"
            )

    tls = None
    if parts.scheme == "https":
        ca = _pem(cluster, "certificate-authority", base, where)
        tls = ssl.create_default_context(cadata=ca.decode() if ca else None)
        if cluster.get("insecure-skip-tls-verify"):
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        cert = _pem(user, "client-certificate", base, who)
        key = _pem(user, "client-key", base, who)
        if bool(cert) != bool(key):
            missing = "client-key" if cert else "client-certificate"
            raise KubeConfigError(f"{who}: {missing}(-data) is missing; a client certificate "
                                  "needs both the certificate and its key")  # fmt: skip
        if cert and key:
            _load_client_pair(tls, cert, key, who)
    token_file = user.get("tokenFile")
    return ClusterAccess(
        server=server,
        source=source,
        tls=tls,
        server_name=cluster.get("tls-server-name") or None,
        token=str(user["token"]) if user.get("token") else None,
        token_file=(base / str(token_file)) if token_file else None,
        namespace=ctx.get("namespace") or None,
    )


def in_cluster(
    service_account_dir: Path = SERVICE_ACCOUNT_DIR, environ: Mapping[str, str] | None = None
) -> ClusterAccess:
    """The pod's own: KUBERNETES_SERVICE_HOST/PORT, the service account's token and CA."""
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeConfigError(
            "no kubeconfig was given and KUBERNETES_SERVICE_HOST/PORT are not set (not in a "
            "pod); pass --kubeconfig"
        )
    token_file, ca_file = service_account_dir / "token", service_account_dir / "ca.crt"
    source = f"the pod's service account ({service_account_dir})"
    for needed in (token_file, ca_file):
        if not needed.is_file():
            raise KubeConfigError(
                f"{source}: {needed} does not exist; mount the ServiceAccount token "
                "(automountServiceAccountToken), or pass --kubeconfig"
            )
    host = f"[{host}]" if ":" in host else host
    try:
        tls = ssl.create_default_context(cafile=str(ca_file))
    except ssl.SSLError as exc:
        raise KubeConfigError(f"{source}: {ca_file} is not a PEM CA bundle: {exc}") from None
    namespace_file = service_account_dir / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.is_file() else None
    return ClusterAccess(
        server=f"https://{host}:{port}",
        source=source,
        tls=tls,
        token_file=token_file,
        namespace=namespace or None,
    )


def _names(doc: Mapping[str, Any], section: str) -> list[str]:
    return [str(e.get("name")) for e in doc.get(section) or [] if isinstance(e, dict)]


def _entry(doc: Mapping[str, Any], section: str, key: str, name: str, path: Path) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            found = entry.get(key) or {}
            if not isinstance(found, dict):
                raise KubeConfigError(
                    f"kubeconfig {path}: {section} {name}: {key} is not a mapping"
                )
            return found
    raise KubeConfigError(
        f"kubeconfig {path} has no {key} named {name!r} (it has: "
        f"{', '.join(_names(doc, section)) or 'none'})"
    )


def _pem(entry: Mapping[str, Any], field: str, base: Path, where: str) -> bytes | None:
    """`field-data` (base64, wins, as in kubectl) or the file `field` names."""
    data = entry.get(f"{field}-data")
    if data:
        try:
            return base64.b64decode(str(data), validate=True)
        except (binascii.Error, ValueError):
            raise KubeConfigError(f"{where}: {field}-data is not base64") from None
    name = entry.get(field)
    if not name:
        return None
    file = base / str(name)
    try:
        return file.read_bytes()
    except OSError as exc:
        raise KubeConfigError(f"{where}: {field} {file}: {exc.strerror or exc}") from None


def _load_client_pair(tls: ssl.SSLContext, cert: bytes, key: bytes, who: str) -> None:
    # ssl loads a certificate chain from files only: an anonymous memory file holds the key,
    # so it is never written to a filesystem (a webhook pod's root is read-only anyway).
    fd = os.memfd_create("kube-client-pair", os.MFD_CLOEXEC)
    try:
        os.write(fd, cert.rstrip(b"\n") + b"\n" + key)
        tls.load_cert_chain(f"/proc/self/fd/{fd}")
    except ssl.SSLError as exc:
        raise KubeConfigError(
            f"{who}: the client certificate and key do not load ({exc.reason or exc}); "
            "check client-certificate(-data) and client-key(-data)"
        ) from None
    finally:
        os.close(fd)
