"""SMTP capture server for the end-to-end tests: aiosmtpd, optionally with STARTTLS
required and AUTH required (PLAIN/LOGIN, only after STARTTLS).

Every accepted mail is written to MAILDIR/new (a Maildir, like aiosmtpd's Mailbox
handler), and one JSON line per mail to MAILDIR/sessions.jsonl saying whether the
session was encrypted and who it authenticated as, so a test can prove that nothing
went out in clear. Runs until killed.

    python3 smtp_capture.py --port P --maildir DIR [--tls-cert C --tls-key K]
                            [--user U --password-file F]
"""
import argparse
import json
import mailbox
import os
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Capture:
    def __init__(self, maildir):
        self.box = mailbox.Maildir(maildir, create=True)
        self.log = open(os.path.join(maildir, "sessions.jsonl"), "a", encoding="utf-8")

    async def handle_DATA(self, server, session, envelope):
        self.box.add(envelope.original_content)
        self.log.write(
            json.dumps(
                {
                    "tls": session.ssl is not None,
                    "user": session.auth_data if session.authenticated else None,
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                }
            )
            + "\n"
        )
        self.log.flush()
        return "250 Message accepted for delivery"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--user")
    ap.add_argument("--password-file")
    a = ap.parse_args()

    kwargs = {}
    if a.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        kwargs.update(tls_context=ctx, require_starttls=True)
    if a.user:
        def authenticator(server, session, envelope, mechanism, auth_data):
            # Read at every login, so a test can rotate the relay's password.
            with open(a.password_file, encoding="utf-8") as f:
                expected = f.read().rstrip("\n")
            ok = (
                auth_data.login.decode() == a.user
                and auth_data.password.decode() == expected
            )
            if ok:
                return AuthResult(success=True, auth_data=a.user)
            # handled=False makes aiosmtpd answer 535 (its default, handled=True,
            # would leave the client waiting for a reply).
            return AuthResult(success=False, handled=False)

        kwargs.update(
            authenticator=authenticator, auth_required=True, auth_require_tls=True
        )

    controller = Controller(
        Capture(a.maildir), hostname="127.0.0.1", port=a.port, **kwargs
    )
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
