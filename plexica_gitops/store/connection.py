"""Connecting to the platform's PostgreSQL.

The URL comes from `--database-url` or the environment (PLEXICA_DATABASE_URL), never from
the desired-state YAML. Errors name the server (host:port), database and user so the
operator can tell which store was meant, and never the password: it is stripped from every
message this module produces, whether the URL is a `postgresql://` URI or a `key=value`
string, and whether the password was percent-encoded or not.

Connections are opened in autocommit mode. Functions of the store that must be atomic open
their own `with conn.transaction():` block, which becomes a savepoint when the caller has
a transaction open already, so callers own the outer transaction."""

from __future__ import annotations

import contextlib
import getpass
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from plexica_gitops.errors import StoreError as StoreError

# psycopg (and libpq) load on the first connection or URL read: `validate`, `plan
# --live-state` and `--help` name the store's URL and this module, never connect.
if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

ENV_DATABASE_URL = "PLEXICA_DATABASE_URL"
CONNECT_TIMEOUT_S = 5
DEFAULT_APPLICATION_NAME = "plexica-gitops"
# The session setting that carries an apply's fencing token (its lease epoch): the store's
# trigger refuses the writes of a session whose epoch no longer holds the lease (lock.py).
FENCE_SETTING = "plexica_gitops.epoch"

_EXAMPLE_URL = "postgresql://plexica@db.example.com:5432/plexica"
_URI_USERINFO = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/?#\s]*):[^@/?#\s]*@", re.I
)
_KV_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)", re.I)
_URI_PASSWORD_PARAM = re.compile(r"(?P<key>[?&]password=)[^&\s]*", re.I)
_URI_SCHEME = re.compile(r"^postgres(?:ql)?://", re.I)
_QUOTED = re.compile(r'"[^"]*"')
REDACTED = "********"


def redact(text: str, *secrets: str | None) -> str:
    """`text` with passwords removed: URI user-info passwords, `password=` options and, for
    every known secret, its plain and percent-encoded forms."""
    text = _URI_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    text = _URI_PASSWORD_PARAM.sub(lambda m: f"{m['key']}{REDACTED}", text)
    text = _KV_PASSWORD.sub(lambda m: f"{m['key']}{REDACTED}", text)
    for secret in secrets:
        if not secret:
            continue
        for form in {secret, quote(secret, safe=""), quote(secret), unquote(secret)}:
            if form:
                text = text.replace(form, REDACTED)
    return text


def database_url(explicit: str | None) -> str:
    """The store's URL: `explicit` (from --database-url) if given, else PLEXICA_DATABASE_URL."""
    if explicit and explicit.strip():
        return explicit.strip()
    from_env = os.environ.get(ENV_DATABASE_URL, "").strip()
    if from_env:
        return from_env
    raise StoreError(
        f"no database to connect to: neither --database-url nor {ENV_DATABASE_URL} is set",
        f"set it, e.g. `export {ENV_DATABASE_URL}={_EXAMPLE_URL}`, or pass "
        f"`--database-url {_EXAMPLE_URL}`; keep the password out of the URL (use PGPASSWORD "
        "or ~/.pgpass)",
    )


def describe_target(url: str) -> tuple[str, str, str, str | None]:
    """(host:port, database, user, password) of a connection string; environment defaults
    (PGHOST, PGPORT, ...) fill what the URL leaves out, as libpq does."""
    import psycopg
    from psycopg import conninfo

    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        params = {}
    host = str(params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "")
    host = host or "localhost (default socket)"
    port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
    user = str(params.get("user") or os.environ.get("PGUSER") or _login_name())
    dbname = str(params.get("dbname") or os.environ.get("PGDATABASE") or user or "(default)")
    password = params.get("password")
    return f"{host}:{port}", dbname, user, str(password) if password else None


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid
        return "(default)"


def _hint_for(reason: str) -> str:
    lowered = reason.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return (
            "check the user name and password (PGPASSWORD or ~/.pgpass) and that this user "
            "may connect (pg_hba.conf)"
        )
    if "does not exist" in lowered and "database" in lowered:
        return "create the database (e.g. `createdb`), or point the URL at the right one"
    if "role" in lowered and "does not exist" in lowered:
        return "create the role, or connect as an existing user"
    if "timeout" in lowered or "timed out" in lowered:
        return (
            f"the server did not answer within {CONNECT_TIMEOUT_S} s: check the host, the port "
            "and any firewall in between"
        )
    if "refused" in lowered or "could not translate host name" in lowered:
        return (
            "check that PostgreSQL is running and listening there, and that "
            f"--database-url / {ENV_DATABASE_URL} names the right host and port"
        )
    return f"check --database-url / {ENV_DATABASE_URL} and that the server is reachable"


def _check_uri_shape(url: str) -> None:
    """Refuse a URI whose user info is not percent-encoded (`postgresql://u:p/w@d@host/db`).

    libpq would split such a URI in the wrong places and then name pieces of the password
    as host, port or database in its errors; nothing of it is echoed here."""
    match = _URI_SCHEME.match(url)
    if not match:
        return
    rest = url[match.end() :]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    beyond = rest[len(authority) :]
    if authority.count("@") > 1 or ("@" not in authority and "@" in beyond):
        raise StoreError(
            "the database URL cannot be read: its user name or password holds characters "
            "that must be percent-encoded in a URL",
            "encode them (/ as %2F, @ as %40, : as %3A, ? as %3F, # as %23), or leave the "
            "password out of the URL and use PGPASSWORD or ~/.pgpass",
        )


def connect(
    url: str, *, application_name: str = DEFAULT_APPLICATION_NAME, epoch: int | None = None
) -> psycopg.Connection[TupleRow]:
    """Open an autocommit connection to the store, giving up after CONNECT_TIMEOUT_S. With
    `epoch` (an apply's fencing token), every write it makes is fenced."""
    import psycopg
    from psycopg import conninfo

    _check_uri_shape(url)
    try:
        conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        # libpq quotes the offending part of the string, which may hold the password
        reason = redact(_QUOTED.sub('"…"', " ".join(str(error).split())))
        raise StoreError(
            f"the database URL is not valid: {reason}",
            f"use the form {_EXAMPLE_URL} (or libpq's key=value form)",
        ) from None
    where, dbname, user, password = describe_target(url)
    target = redact(f"PostgreSQL at {where}, database {dbname!r} as user {user!r}", password)
    try:
        conn = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=application_name,
        )
        if epoch is not None:
            with _closed_on_error(conn):
                conn.execute("SELECT set_config(%s, %s, false)", (FENCE_SETTING, str(epoch)))
        return conn
    except psycopg.Error as error:
        reason = " ".join(redact(str(error), password).split())
        raise StoreError(f"cannot connect to {target}: {reason}", _hint_for(reason)) from None


@contextlib.contextmanager
def _closed_on_error(conn: psycopg.Connection[TupleRow]) -> Iterator[None]:
    try:
        yield
    except BaseException:
        conn.close()
        raise
