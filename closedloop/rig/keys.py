"""CurveZMQ keys: encryption and client authentication for a server reached from other machines.

One folder, the same layout on both sides (ZeroMQ certificate files, made by `closedloop keys`):

    server.key_secret   the server's key pair: stays on the server
    server.key          the server's public key: the client needs it to know it talks to the server
    client.key_secret   the client's key pair: copy it to the client
    *.key               public keys of the clients the server accepts (client.key, and any you add)
"""

from __future__ import annotations

from pathlib import Path

from closedloop.errors import ClosedLoopError


def _load(folder: Path, name: str) -> tuple[bytes, bytes | None]:
    import zmq.auth

    path = folder / name
    if not path.is_file():
        raise ClosedLoopError(f"{path}: no such key file (make keys with: closedloop keys {folder})")
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ClosedLoopError(f"{path}: not a ZeroMQ certificate ({exc})") from None


def create(folder) -> list[Path]:
    """Make the server's and one client's key pairs in `folder`; never overwrites keys."""
    import zmq.auth

    folder = Path(folder)
    names = [folder / f"{who}.{kind}" for who in ("server", "client") for kind in ("key", "key_secret")]
    existing = [path for path in names if path.exists()]
    if existing:
        raise ClosedLoopError(f"{existing[0]}: exists; keys are never overwritten (remove them or pick another folder)")
    folder.mkdir(parents=True, exist_ok=True)
    for who in ("server", "client"):
        zmq.auth.create_certificates(folder, who)
    for path in names:
        if path.suffix == ".key_secret":
            path.chmod(0o600)
    return names


def secure_server(socket, folder) -> object:
    """Make `socket` (before bind) a CURVE server that accepts only the public keys in `folder`;
    returns the authenticator thread, to stop when the socket closes."""
    from zmq.auth.thread import ThreadAuthenticator

    folder = Path(folder)
    public, secret = _load(folder, "server.key_secret")
    if secret is None:
        raise ClosedLoopError(f"{folder / 'server.key_secret'}: holds no secret key")
    authenticator = ThreadAuthenticator(socket.context)
    authenticator.start()
    authenticator.configure_curve(domain="*", location=str(folder))
    socket.curve_secretkey, socket.curve_publickey, socket.curve_server = secret, public, True
    return authenticator


def secure_client(socket, folder) -> None:
    """Make `socket` (before connect) a CURVE client of the server whose public key is in `folder`."""
    folder = Path(folder)
    public, secret = _load(folder, "client.key_secret")
    if secret is None:
        raise ClosedLoopError(f"{folder / 'client.key_secret'}: holds no secret key")
    server_public, _ = _load(folder, "server.key")
    socket.curve_secretkey, socket.curve_publickey, socket.curve_serverkey = secret, public, server_public
