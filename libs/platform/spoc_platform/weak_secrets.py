"""Passwords and tokens a production deployment must not run with: the ones an attacker tries
first, and the placeholders Spoc's own deployment files publish for a laptop or an example."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

MIN_PASSWORD_LENGTH = 12
# Bearer tokens can be tried by anyone who reaches the port, with no lockout: long enough that
# guessing one online is hopeless (`openssl rand -hex 32` gives 64 characters).
MIN_TOKEN_LENGTH = 32

# Words the values published with Spoc carry (docker-compose.yml's "...-local-only" defaults,
# the Kubernetes example's "example-only-...-change-me"): whatever else such a value is, it is
# public. Compared case-insensitively, anywhere in the value.
PUBLISHED_MARKERS = ("local-only", "example-only", "change-me", "changeme")

# Well-known defaults of the images and tutorials Spoc is deployed beside, and the first
# entries of every guessing list. Compared case-insensitively.
WELL_KNOWN_PASSWORDS = frozenset(
    {
        "",
        "admin",
        "administrator",
        "changeit",
        "changeme",
        "default",
        "guest",
        "letmein",
        "pass",
        "passw0rd",
        "password",
        "password1",
        "password123",
        "postgres",
        "qwerty",
        "rabbitmq",
        "root",
        "secret",
        "spoc",
        "test",
        "12345678",
        "123456789",
        "1234567890",
        "123456789012",
    }
)


def published_marker(secret: str) -> str | None:
    """The placeholder word in `secret`, if it is one of the values published with Spoc."""
    lowered = secret.lower()
    return next((marker for marker in PUBLISHED_MARKERS if marker in lowered), None)


def weak_token(token: str) -> str | None:
    """Why a bearer token is weak, or None."""
    # The length (MIN_TOKEN_LENGTH) is the token fields' own constraint, in every environment.
    marker = published_marker(token)
    return f"the token is a published placeholder (it contains {marker!r})" if marker else None


def weak_credentials(url: str, *, password_required: bool) -> str | None:
    """Why the password in `url` is weak, or None. A URL without a host (SQLite) has none to
    check; a URL without a password is weak only where the client would fall back to a
    default one (`password_required`: aio-pika then logs in as guest:guest)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    user = unquote(parts.username) if parts.username else ""
    if parts.password is None:
        return "no password (the client's default would be used)" if password_required else None
    password = unquote(parts.password)
    if not password:
        return "the password is empty"
    if password.lower() in WELL_KNOWN_PASSWORDS:
        return "the password is a well-known default"
    marker = published_marker(password)
    if marker:
        return f"the password is a published placeholder (it contains {marker!r})"
    if user and password.lower() == user.lower():
        return "the password is the user name"
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password is shorter than {MIN_PASSWORD_LENGTH} characters"
    return None
