#!/usr/bin/env python3
"""An SMTP server built on aiosmtpd, for tests/check.rs: an independent implementation to run
`portcullis check` against, with the behaviours Portcullis itself never shows (no STARTTLS, an
open relay, sender refusals, a PLAIN-only failure, lockouts, relay denial like an MX).

Listens on 127.0.0.1 on a free port, prints "listening on PORT" once ready, and runs until its
standard input closes, so it never outlives the test that started it.
"""
import argparse
import asyncio
import ssl
import sys

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError:
    sys.exit("aiosmtpd is not installed: python3 -m pip install aiosmtpd")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cert", help="PEM certificate: offer STARTTLS")
    parser.add_argument("--key", help="PEM private key for --cert")
    parser.add_argument("--user", help="the one account that may log in")
    parser.add_argument("--password", default="")
    parser.add_argument("--mechanisms", default="PLAIN,LOGIN",
                        help="mechanisms with which the right credentials are accepted")
    parser.add_argument("--lock-after", type=int,
                        help="after this many failed logins, answer every AUTH with 454")
    parser.add_argument("--auth-required", action="store_true",
                        help="530 to MAIL before a login")
    parser.add_argument("--no-auth", action="store_true", help="never advertise AUTH")
    parser.add_argument("--reject-sender", action="append", default=[],
                        help="answer MAIL FROM with 553 5.7.1 for this address")
    parser.add_argument("--mail-530", action="append", default=[],
                        help="answer MAIL FROM with 530 for this address, even after a login")
    parser.add_argument("--local-domain",
                        help="refuse RCPT for any other domain: 554 5.7.1 Relay access denied")
    return parser.parse_args()


class Handler:
    def __init__(self, args):
        self.args = args

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.args.no_auth:
            responses = [r for r in responses if not r[4:].upper().startswith("AUTH")]
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if address in self.args.reject_sender:
            return f"553 5.7.1 <{address}>: Sender address rejected: not owned by user"
        if address in self.args.mail_530:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        domain = address.rpartition("@")[2]
        if self.args.local_domain and domain != self.args.local_domain:
            return f"554 5.7.1 <{address}>: Relay access denied"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        return "250 2.0.0 Ok: queued as AIOSMTPD42"


class Authenticator:
    def __init__(self, args):
        self.args = args
        self.failures = 0

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if self.args.lock_after is not None and self.failures >= self.args.lock_after:
            return AuthResult(success=False, handled=False,
                              message="454 4.7.0 Too many failed logins; try again later")
        good = (
            self.args.user is not None
            and isinstance(auth_data, LoginPassword)
            and mechanism in self.args.mechanisms.split(",")
            and auth_data.login == self.args.user.encode()
            and auth_data.password == self.args.password.encode()
        )
        if not good:
            self.failures += 1
            # handled=False: aiosmtpd sends its 535 itself.
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=auth_data)


async def main(args):
    loop = asyncio.get_running_loop()
    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    handler = Handler(args)
    authenticator = Authenticator(args)

    def factory():
        return SMTP(handler, hostname="mx.example.test", tls_context=context,
                    auth_required=args.auth_required, authenticator=authenticator)

    server = await loop.create_server(factory, "127.0.0.1", 0)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
