"""Builds the messages people receive, from Jinja2 templates per kind and locale."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.charset import QP, Charset
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import format_datetime, formataddr, parseaddr
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, TemplateNotFound, select_autoescape

from spoc_platform.dates import for_people

_templates = Environment(
    loader=PackageLoader("spoc_notify", "templates"),
    autoescape=select_autoescape(["html.j2"]),
    keep_trailing_newline=False,
)

_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP

TARGET_LABELS = {"first_response": "First response by", "resolution": "Resolution by"}


@dataclass(frozen=True)
class Acknowledgement:
    ticket_id: str
    number: str
    subject: str
    name: str
    email: str
    locale: str | None
    priority: str
    access_key: str
    targets: dict[str, datetime]
    # Due times are shown on this clock (an IANA zone): the desk's, as no event says the
    # requester's own.
    time_zone: str = "UTC"
    # Whether the headers may carry what the ticket's opener wrote (its subject, the
    # requester's name). Not to an address the desk has never heard from: anyone may open a
    # ticket for any address, and a chosen subject line and display name are what phishing is
    # made of. Then the subject is the desk's words and the number, and To the address alone.
    opener_text_in_headers: bool = True


def _render(locale: str | None, template: str, **context: object) -> str:
    """The template in the requester's locale, else its language, else English."""
    for candidate in (locale or "", (locale or "").split("-")[0], "en"):
        if not candidate:
            continue
        try:
            return _templates.get_template(f"{candidate}/{template}").render(**context)
        except TemplateNotFound:
            continue
    raise TemplateNotFound(template)


def portal_link(portal_url: str, number: str, access_key: str) -> str:
    return f"{portal_url.rstrip('/')}/t/{quote(number)}?key={quote(access_key)}"


def acknowledgement_message(ack: Acknowledgement, *, sender: str, portal_url: str) -> MIMEMultipart:
    domain = sender.rsplit("@", 1)[-1].rstrip(">") or "spoc.localhost"
    context = {
        "number": ack.number,
        "subject": ack.subject,
        "name": ack.name,
        "priority": ack.priority,
        "link": portal_link(portal_url, ack.number, ack.access_key),
        "targets": [
            {
                "label": TARGET_LABELS.get(metric, metric),
                # In the requester's language and on the desk's clock, the zone spelt out.
                "due": for_people(due, locale=ack.locale, zone=ack.time_zone),
                "at": due.isoformat(),
            }
            for metric, due in sorted(ack.targets.items(), key=lambda item: item[1])
        ],
    }
    # The compat32 classes build a message in half the time of EmailMessage's header registry;
    # notify writes one per ticket, so it shows at load.
    message = MIMEMultipart("alternative")
    message["From"] = _address(*parseaddr(sender))
    if ack.opener_text_in_headers:
        message["To"] = _address(ack.name, ack.email)
        subject = _render(ack.locale, "acknowledgement.subject.j2", **context)
    else:
        # Through formataddr all the same: an address it cannot write is refused here too.
        message["To"] = _address("", ack.email)
        subject = _render(ack.locale, "acknowledgement.plain_subject.j2", number=ack.number)
    message["Subject"] = _header(subject.strip())
    message["Date"] = format_datetime(datetime.now().astimezone())
    # The same ticket always gets the same Message-ID: should a crash make us send twice,
    # mail clients and servers fold the copies into one.
    message["Message-ID"] = f"<ack.{ack.ticket_id}@{domain}>"
    message["X-Spoc-Ticket"] = ack.number
    # RFC 3834: an automatic reply, so other robots do not answer it.
    message["Auto-Submitted"] = "auto-replied"
    message["X-Auto-Response-Suppress"] = "All"
    message.attach(_text(_render(ack.locale, "acknowledgement.txt.j2", **context), "plain"))
    message.attach(_text(_render(ack.locale, "acknowledgement.html.j2", **context), "html"))
    return message


def _header(value: str) -> str:
    """ASCII as is (readable); anything else as an RFC 2047 encoded word."""
    return value if value.isascii() else Header(value, "utf-8").encode()


def _address(name: str, address: str) -> str:
    return formataddr((name, address), charset="utf-8")


def _text(body: str, subtype: str) -> MIMENonMultipart:
    # Quoted-printable keeps the stored mail readable by a person (base64 would not).
    part = MIMENonMultipart("text", subtype)
    part.set_payload(body, charset=_UTF8_QP)
    return part


@dataclass(frozen=True)
class SignInLink:
    """A requester's one-time sign-in link (requester.sign_in_requested)."""

    # Fixes the Message-ID: should a crash make us send twice, the copies fold into one.
    request_id: str
    email: str
    locale: str | None
    token: str
    expires_at: datetime
    time_zone: str = "UTC"


def sign_in_link(portal_url: str, token: str) -> str:
    return f"{portal_url.rstrip('/')}/requester/sign-in?token={quote(token)}"


def sign_in_message(link: SignInLink, *, sender: str, portal_url: str) -> MIMEMultipart:
    """The mail with the link. Nothing a caller wrote reaches it: anyone may ask for a link
    to any address, so its headers and text are the desk's own words and the address only."""
    domain = sender.rsplit("@", 1)[-1].rstrip(">") or "spoc.localhost"
    context = {
        "link": sign_in_link(portal_url, link.token),
        "expires": for_people(link.expires_at, locale=link.locale, zone=link.time_zone),
        "expires_at": link.expires_at.isoformat(),
    }
    message = MIMEMultipart("alternative")
    message["From"] = _address(*parseaddr(sender))
    # Through formataddr, as the acknowledgement's: an address it cannot write (non-ASCII, which
    # needs SMTPUTF8) is refused here, not sent on as an encoded word no server delivers to.
    message["To"] = _address("", link.email)
    message["Subject"] = _header(_render(link.locale, "sign_in_link.subject.j2", **context).strip())
    message["Date"] = format_datetime(datetime.now().astimezone())
    message["Message-ID"] = f"<sign-in.{link.request_id}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message.attach(_text(_render(link.locale, "sign_in_link.txt.j2", **context), "plain"))
    message.attach(_text(_render(link.locale, "sign_in_link.html.j2", **context), "html"))
    return message
