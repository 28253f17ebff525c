"""Faults of a store in words: what an exception met while reading or writing a lake (or an upload) means.

A store fails in few ways a user can mend: it cannot be reached, the credentials are missing or
refused, the bucket does not exist, a file stands where a folder should be. :func:`lake_fault`
turns such an exception into one :class:`~kafer.errors.LakeError` line naming the lake and what
to do; anything else is a bug and is left to propagate.
"""

from __future__ import annotations

from .errors import LakeError

_NO_CREDENTIALS = frozenset({"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
                             "NoAuthTokenError", "TokenRetrievalError", "UnauthorizedSSOTokenError",
                             "ProfileNotFound", "InvalidConfigError"})
_UNREACHABLE = frozenset({"EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError",
                          "ReadTimeoutError", "ProxyConnectionError", "SSLError", "HTTPClientError",
                          "ClientConnectorError", "ServerDisconnectedError", "ServerTimeoutError"})


def exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, outermost first."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        chain.append(exc)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return chain


def first_line(exc: BaseException) -> str:
    """``Type: the first line of its message``."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def from_store(exc: BaseException) -> bool:
    """Whether ``exc`` is a fault of the storage (a file system, a network, an object store's client)
    rather than a bug."""
    chain = exception_chain(exc)
    return isinstance(exc, OSError) or any("ClientError" == type(e).__name__ or type(e).__module__.startswith(
        ("botocore", "aiobotocore", "aiohttp")) for e in chain)


def names_missing_bucket(exc: BaseException, bucket: str | None) -> bool:
    """Whether ``exc`` says that the lake's bucket does not exist."""
    text = " ".join(str(e) for e in exception_chain(exc))
    return bucket is not None and isinstance(exc, FileNotFoundError) and (
        "bucket does not exist" in text.lower() or "NoSuchBucket" in text)


def missing_bucket(url: str, bucket: str) -> LakeError:
    """The error for a lake whose bucket does not exist (Käfer never creates one)."""
    return LakeError(f"the lake {url} is in bucket {bucket!r}, which does not exist: "
                     "correct the lake URL, or create the bucket (Käfer never creates one)")


def lake_fault(exc: BaseException, *, url: str, action: str, key: str, bucket: str | None,
               s3: bool) -> LakeError | None:
    """The LakeError that says what ``exc``, met doing ``action`` on ``key`` of the lake ``url``,
    means; None for a bug (to be re-raised)."""
    chain = exception_chain(exc)
    names = {type(e).__name__ for e in chain}
    detail = first_line(exc)
    what = f"{action} {key!r} in" if key else f"{action}"
    if names & _NO_CREDENTIALS:
        return LakeError(f"no credentials for the lake {url} ({detail}): set AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or fsspec's configuration, and try again")
    if names & _UNREACHABLE or any(isinstance(e, (ConnectionError, TimeoutError)) for e in chain):
        address = ("the store's address (AWS_ENDPOINT_URL_S3 or fsspec's configuration)"
                   if s3 else "the store's address")
        return LakeError(f"cannot reach the lake {url} ({detail}): check {address} and the network, "
                         "then try again")
    if names_missing_bucket(exc, bucket):
        return missing_bucket(url, bucket)
    if isinstance(exc, PermissionError):
        return LakeError(f"permission denied: cannot {what} the lake {url} ({detail}): "
                         "check that your credentials may read and write it")
    if isinstance(exc, (NotADirectoryError, FileExistsError, IsADirectoryError)):
        return LakeError(f"cannot {what} the lake {url}: a file stands where a folder should be, "
                         f"or the reverse ({detail}); check the lake's path")
    if isinstance(exc, FileNotFoundError):
        return LakeError(f"the lake {url} has no {key!r}" if key else f"cannot {what} the lake {url}: {detail}")
    if from_store(exc):
        return LakeError(f"cannot {what} the lake {url}: {detail}")
    return None
