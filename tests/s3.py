"""S3 as a tested target: a moto server on 127.0.0.1 and the environment that points a lake at it.

A lake reaches the server through botocore's own environment, which the CLI and papermill kernels
(other processes) inherit::

    AWS_ENDPOINT_URL_S3=http://127.0.0.1:PORT   # botocore's per-service endpoint
    AWS_ACCESS_KEY_ID=testing  AWS_SECRET_ACCESS_KEY=testing  AWS_DEFAULT_REGION=us-east-1
    AWS_EC2_METADATA_DISABLED=true              # never ask 169.254.169.254 for credentials
    AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE = empty files   # ignore the developer's ~/.aws

(``fsspec.config.conf["s3"] = {"endpoint_url": ...}`` or ``FSSPEC_S3_ENDPOINT_URL`` work too, but
fsspec reads its environment once, at import.)
"""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

BUCKET = "kafer-test"

#: Variables that would point botocore elsewhere than the test server.
FOREIGN = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
           "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
           "AWS_CONTAINER_CREDENTIALS_FULL_URI")


def free_port() -> int:
    """A TCP port nothing listens on (just closed), for the server or for an endpoint that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _OneAtATime:
    """A WSGI app that answers one request at a time. moto checks a write's condition (If-Match,
    If-None-Match) and then writes, in two steps that another request may come between; S3 does
    both at once, and so does the test server through this."""

    def __init__(self, app):
        self.app, self.guard = app, threading.Lock()

    def __call__(self, environ, start_response):
        with self.guard:
            return list(self.app(environ, start_response))


def start_server():
    """A moto S3 server in a thread of this process, atomic in its conditional writes as S3 is;
    returns ``(server, endpoint URL)`` (``server.shutdown()`` stops it)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    app = _OneAtATime(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", free_port(), app, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, name="moto-s3", daemon=True).start()
    host, port = server.server_address[:2]
    return server, f"http://{host}:{port}"


def environment(endpoint: str, folder: Path) -> dict[str, str]:
    """The environment that points boto (hence s3fs, hence a ``Lake("s3://…")``) at ``endpoint``."""
    empty = folder / "aws-empty"
    empty.write_text("", encoding="ascii")
    return {"AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(empty), "AWS_SHARED_CREDENTIALS_FILE": str(empty)}


def forget_clients() -> None:
    """Drop s3fs's cached filesystems, which keep the endpoint and credentials they were made with."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


def buckets() -> list[str]:
    """The buckets the server holds (asked afresh)."""
    import fsspec

    forget_clients()
    return sorted(fsspec.filesystem("s3").ls("", refresh=True))
