"""Sending email: one small backend interface, SMTP when `SMTP_HOST` is set, `.eml` files otherwise.

`init_app()` only chooses and stores the backend; nothing connects until a message is sent. The file backend (the
embedded default) writes each message under `<instance_path>/mail/`, where a developer can open it in a mail client.
"""
from __future__ import annotations

import logging
import os
import smtplib
import ssl
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from flask import Flask, current_app

from portal.clock import utcnow
from portal.config import Settings

log = logging.getLogger(__name__)

SMTP_TIMEOUT_SEC = 10.0


class MailError(RuntimeError):
    """The message could not be handed over (server down, refused, timed out). Sending again may work."""


class MailBackend(Protocol):
    def send(self, message: EmailMessage) -> None: ...


class SMTPBackend:
    """One connection per message: notifications are few, and a long-lived connection would go stale in a worker."""

    def __init__(self, host: str, port: int = 25, *, username: str = "", password: str = "", starttls: bool = False,
                 timeout: float = SMTP_TIMEOUT_SEC, local_hostname: str | None = None):
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.starttls = starttls
        self.timeout = timeout
        self.local_hostname = local_hostname

    def send(self, message: EmailMessage) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password)
                smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as error:
            raise MailError(f"SMTP {self.host}:{self.port}: {type(error).__name__}: {error}") from error

    def __repr__(self) -> str:
        return f"<SMTPBackend {self.host}:{self.port}>"


class FileBackend:
    """Writes each message to `<directory>/<utc time>-<random>.eml` (written aside, then renamed into place)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def send(self, message: EmailMessage) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{utcnow():%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.eml"
            partial = self.directory / (name + ".part")
            partial.write_bytes(message.as_bytes())
            partial.replace(self.directory / name)
        except OSError as error:
            raise MailError(f"could not write {self.directory}: {error}") from error
        log.info("mail written to %s (to %s: %s)", self.directory / name, message["To"], message["Subject"])

    def __repr__(self) -> str:
        return f"<FileBackend {self.directory}>"


def backend_for(settings: Settings) -> MailBackend:
    if settings.smtp_host:
        return SMTPBackend(settings.smtp_host, settings.smtp_port, username=settings.smtp_username,
                           password=settings.smtp_password, starttls=settings.smtp_starttls)
    return FileBackend(Path(settings.instance_path) / "mail")


def init_app(app: Flask) -> None:
    app.extensions["mail"] = backend_for(app.config["PORTAL_SETTINGS"])


def get_mail_backend() -> MailBackend:
    return current_app.extensions["mail"]
