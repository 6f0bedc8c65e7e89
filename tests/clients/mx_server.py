#!/usr/bin/env python3
"""A receiving SMTP server built on aiosmtpd, for the delivery end-to-end tests: it plays an MX
host or a smarthost on one loopback address (127.0.0.x) and records what Portcullis delivers.

Listens on --host and --port (0: a free port), prints "listening on PORT" once ready, and runs
until its standard input closes, so it never outlives the test that started it.

Every accepted message is written atomically (a temporary file, then a rename) to
--out DIR/NNNNNN.json:

    {"mail_from": "" for <>, "rcpt_tos": [...], "mail_options": [...],
     "rcpt_options": {rcpt: [...]}, "data_b64": the exact bytes after dot-unstuffing,
     "peer": "ip:port", "helo": EHLO name, "connection": n, "tls": bool, "tls_version": ...,
     "auth_user": login or null, "closed": true when the client never got the reply to the dot}

and each decision (connect, ehlo, starttls, auth, mail, rcpt, data, vrfy, disconnect) is appended
as one JSON line to DIR/events.jsonl: {"connection", "event", "argument", "reply", "tls",
"pipelined"} ("pipelined": more commands were already waiting when the server decided).

What a recipient gets depends on its local part, so that one server serves many test cases:
accept* 250, reject* 550 5.1.1, tempfail* 451 4.3.0, greylist* 450 4.2.0 the first time the
(sender, recipient) pair is seen and 250 afterwards, full* 452 4.2.2, anything else 250.

Options, addresses and EHLO names are as aiosmtpd parsed them: MAIL and RCPT parameters keep
the case they were sent in (aiosmtpd itself upper-cases them), a null sender is "".
"""
import argparse
import asyncio
import base64
import json
import logging
import os
import ssl
import sys

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, syntax
except ImportError:
    sys.exit("aiosmtpd is not installed: python3 -m pip install aiosmtpd")

# DSN parameters (RFC 3461), which aiosmtpd refuses with 555 unless --dsn.
DSN_PARAMETERS = ("RET", "ENVID", "NOTIFY", "ORCPT")


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    parser.add_argument("--out", required=True, help="directory for messages and events")
    parser.add_argument("--hostname", default="mx.example.test",
                        help="the name in the greeting and the EHLO reply")
    parser.add_argument("--greeting",
                        help='greet every connection with this reply (for example '
                             '"421 4.3.2 Service not available") and close it')
    parser.add_argument("--delay-greeting", type=float, default=0.0, metavar="SECONDS",
                        help="wait this long before the greeting")
    parser.add_argument("--data-reply",
                        help="reply to the final dot with this instead of 250 (nothing stored)")
    parser.add_argument("--close-after-dot", type=int, default=0, metavar="N",
                        help="for the first N messages, close the connection after the final "
                             'dot without a reply (they are stored with "closed": true)')
    parser.add_argument("--delay-data", type=float, default=0.0, metavar="SECONDS",
                        help="wait this long before replying to the final dot (a message "
                             'whose client hangs up meanwhile is marked "closed": true)')
    parser.add_argument("--size", type=int, default=2**25, metavar="N",
                        help="advertise and enforce SIZE N (0: neither)")
    parser.add_argument("--no-pipelining", action="store_true",
                        help="do not advertise PIPELINING (advertised by default)")
    parser.add_argument("--smtputf8", action=argparse.BooleanOptionalAction, default=True,
                        help="advertise SMTPUTF8 and accept UTF-8 addresses (default: yes)")
    parser.add_argument("--no-8bitmime", action="store_true",
                        help="do not advertise 8BITMIME, and refuse BODY=8BITMIME with 555")
    parser.add_argument("--dsn", action="store_true",
                        help="advertise DSN and accept RET, ENVID, NOTIFY and ORCPT")
    parser.add_argument("--cert", help="PEM certificate chain: offer STARTTLS")
    parser.add_argument("--key", help="PEM private key for --cert")
    parser.add_argument("--require-tls", action="store_true",
                        help="530 5.7.0 to MAIL, RCPT and DATA before STARTTLS")
    parser.add_argument("--user", help="the one account that may log in (AUTH PLAIN LOGIN, "
                                       "offered only after STARTTLS)")
    parser.add_argument("--password", default="")
    parser.add_argument("--auth-required", action="store_true",
                        help="530 5.7.0 Authentication required to MAIL before a login")
    args = parser.parse_args()
    if (args.require_tls or args.user) and not args.cert:
        parser.error("--require-tls and --user need --cert and --key")
    if args.auth_required and not args.user:
        parser.error("--auth-required needs --user")
    return args


def text(value):
    """A string safe for JSON: aiosmtpd decodes arguments with surrogateescape."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def peer_name(peer):
    """'ip:port' (or '[ip]:port') of a peer address tuple."""
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class MxSMTP(SMTP):
    """aiosmtpd's SMTP with a configurable greeting, connection numbers, the raw argument of
    MAIL and RCPT (to record their parameters as sent) and optional DSN parameters."""

    connections = 0

    def __init__(self, handler, args, **kwargs):
        super().__init__(handler, **kwargs)
        self.args = args
        self.raw_argument = ""
        MxSMTP.connections += 1
        self.connection = MxSMTP.connections

    async def _handle_client(self):
        if self.args.delay_greeting:
            await asyncio.sleep(self.args.delay_greeting)
        if self.args.greeting:
            self.event_handler.event(self, "connect", peer_name(self.session.peer),
                                     self.args.greeting)
            print(f"{self.args.host} #{self.connection}: refused with {self.args.greeting}",
                  file=sys.stderr, flush=True)
            await self.push(self.args.greeting)
            self.transport.close()
            return
        self.event_handler.event(self, "connect", peer_name(self.session.peer),
                                 f"220 {self.hostname} {self.__ident__}")
        await super()._handle_client()

    def connection_lost(self, error):
        if self.session is not None:
            self.event_handler.event(self, "disconnect", "", None)
        super().connection_lost(error)

    async def check_auth_needed(self, caller_method):
        """aiosmtpd's gate of MAIL, RCPT, DATA and VRFY, with --require-tls before it and both
        refusals logged as events."""
        if self.args.require_tls and self.session.ssl is None:
            reply = "530 5.7.0 Must issue a STARTTLS command first"
        elif self._auth_required and not self.session.authenticated:
            reply = "530 5.7.0 Authentication required"
        else:
            return False
        argument = self.raw_argument if caller_method in ("MAIL", "RCPT") else ""
        self.event_handler.event(self, caller_method.lower(), argument, reply)
        await self.push(reply)
        return True

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg):
        self.raw_argument = arg or ""
        await super().smtp_MAIL(arg)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg):
        self.raw_argument = arg or ""
        await super().smtp_RCPT(arg)

    def _getparams(self, params):
        result = super()._getparams(params)
        if result is not None and self.args.dsn:
            for name in DSN_PARAMETERS:
                result.pop(name, None)
        return result

    def parameters(self, keyword):
        """The parameters of the current MAIL or RCPT as sent (aiosmtpd upper-cases them)."""
        arg = self._strip_command_keyword(keyword, self.raw_argument) or ""
        _, rest = self._getaddr(arg)
        return [text(p) for p in (rest or "").split()]

    def pipelined(self):
        """True when the client's next commands are already waiting (it did not wait for the
        reply); a pipelining client whose commands arrive one by one is not detected."""
        return bool(getattr(self._reader, "_buffer", b""))

    def tls_version(self):
        if self.session.ssl is None:
            return None
        try:
            return self.transport.get_extra_info("ssl_object").version()
        except AttributeError:
            return None


class Handler:
    """The hooks: per-recipient replies, storage of accepted messages, the event log."""

    def __init__(self, args):
        self.args = args
        self.greylisted = set()
        self.messages = 0
        self.dots = 0
        os.makedirs(args.out, exist_ok=True)
        self.events = os.open(os.path.join(args.out, "events.jsonl"),
                              os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def event(self, server, kind, argument, reply):
        """Appends one line to events.jsonl, in a single write."""
        record = {
            "connection": server.connection,
            "event": kind,
            "argument": text(argument),
            "reply": reply,
            "tls": server.session is not None and server.session.ssl is not None,
            "pipelined": kind in ("mail", "rcpt") and server.pipelined(),
        }
        os.write(self.events, (json.dumps(record) + "\n").encode())

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        last = responses.pop()  # "250 HELP"
        if not self.args.user:
            responses = [r for r in responses if not r[4:].upper().startswith("AUTH")]
        if self.args.no_8bitmime:
            responses = [r for r in responses if r[4:].upper() != "8BITMIME"]
        if not self.args.no_pipelining:
            responses.insert(1, "250-PIPELINING")
        if self.args.dsn:
            responses.append("250-DSN")
        responses.append(last)
        self.event(server, "ehlo", hostname, "250 " + " ".join(r[4:] for r in responses))
        return responses

    def handle_STARTTLS(self, server, session, envelope):
        self.event(server, "starttls", "", "220 Ready to start TLS")
        return True

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.args.no_8bitmime and "BODY=8BITMIME" in mail_options:
            reply = "555 5.5.4 BODY=8BITMIME is not supported here"
        else:
            envelope.mail_from = address
            envelope.mail_options.extend(server.parameters("FROM:"))
            envelope.options_by_rcpt = {}
            envelope.refused = []
            reply = "250 2.1.0 Ok"
        self.event(server, "mail", server.raw_argument, reply)
        return reply

    def recipient_reply(self, sender, address):
        """The reply to RCPT, chosen by the recipient's local part."""
        local = address.rpartition("@")[0].strip('"').lower()
        if local.startswith("reject"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if local.startswith("tempfail"):
            return "451 4.3.0 Temporary failure"
        if local.startswith("greylist") and (sender, address) not in self.greylisted:
            self.greylisted.add((sender, address))
            return (f"450 4.2.0 <{address}>: Recipient address rejected: "
                    "Greylisted, try again later")
        if local.startswith("full"):
            return "452 4.2.2 Mailbox full"
        return "250 2.1.5 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.recipient_reply(envelope.mail_from, address)
        if reply.startswith("250"):
            options = server.parameters("TO:")
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
            envelope.options_by_rcpt[text(address)] = options
        else:
            envelope.refused.append(address)
        self.event(server, "rcpt", server.raw_argument, reply)
        return reply

    def store(self, server, session, envelope, closed, number=None):
        """Writes the message as NNNNNN.json (temporary file, then rename); its number."""
        if number is None:
            self.messages += 1
            number = self.messages
        mail_from = "" if envelope.mail_from == "<>" else envelope.mail_from
        auth = session.auth_data if session.authenticated else None
        record = {
            "mail_from": text(mail_from),
            "rcpt_tos": [text(r) for r in envelope.rcpt_tos],
            "mail_options": envelope.mail_options,
            "rcpt_options": envelope.options_by_rcpt,
            "data_b64": base64.b64encode(envelope.original_content).decode(),
            "peer": peer_name(session.peer),
            "helo": text(session.host_name or ""),
            "connection": server.connection,
            "tls": session.ssl is not None,
            "tls_version": server.tls_version(),
            "auth_user": auth.login.decode("utf-8", "replace")
            if isinstance(auth, LoginPassword) else None,
            "closed": closed,
        }
        name = os.path.join(self.args.out, f"{number:06d}.json")
        temporary = os.path.join(self.args.out, f".{number:06d}.json.tmp")
        with open(temporary, "w") as file:
            json.dump(record, file)
        os.replace(temporary, name)
        return number

    def summary(self, server, envelope, reply):
        print(f"{self.args.host} #{server.connection}: <{text(envelope.mail_from)}> -> "
              f"{[text(r) for r in envelope.rcpt_tos]} (refused {len(envelope.refused)}), "
              f"{len(envelope.original_content)} bytes: {reply}", file=sys.stderr, flush=True)

    async def handle_DATA(self, server, session, envelope):
        self.dots += 1
        if self.dots <= self.args.close_after_dot:
            self.store(server, session, envelope, closed=True)
            self.event(server, "data", "", None)
            self.summary(server, envelope, "closed without a reply")
            # abort, not close: no TLS close_notify exchange, the socket goes at once. The
            # closed connection cancels this task (connection_lost), so nothing is sent.
            server.transport.abort()
            await asyncio.sleep(3600)
        if self.args.data_reply:
            if self.args.delay_data:
                await asyncio.sleep(self.args.delay_data)
            reply = self.args.data_reply
        else:
            number = self.store(server, session, envelope, closed=False)
            reply = f"250 2.0.0 Ok: queued as MX{number:06d}"
            if self.args.delay_data:
                try:
                    await asyncio.sleep(self.args.delay_data)
                except asyncio.CancelledError:
                    # The client hung up: it never learnt that the message was accepted.
                    self.store(server, session, envelope, closed=True, number=number)
                    self.event(server, "data", "", None)
                    self.summary(server, envelope, "client left before the reply")
                    raise
        self.event(server, "data", "", reply)
        self.summary(server, envelope, reply)
        return reply


class Authenticator:
    """Accepts exactly --user and --password, with PLAIN or LOGIN."""

    def __init__(self, args, handler):
        self.args = args
        self.handler = handler

    def __call__(self, server, session, envelope, mechanism, auth_data):
        good = (
            self.args.user is not None
            and isinstance(auth_data, LoginPassword)
            and auth_data.login == self.args.user.encode()
            and auth_data.password == self.args.password.encode()
        )
        login = auth_data.login.decode("utf-8", "replace") \
            if isinstance(auth_data, LoginPassword) else ""
        reply = "235 2.7.0 Authentication successful" if good \
            else "535 5.7.8 Authentication credentials invalid"
        self.handler.event(server, "auth", f"{mechanism} {login}", reply)
        # handled=False on failure: aiosmtpd sends its 535 itself.
        return AuthResult(success=good, handled=False, auth_data=auth_data if good else None)


async def main(args):
    # aiosmtpd warns on every login that Session.login_data is deprecated; keep real errors.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    loop = asyncio.get_running_loop()
    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    handler = Handler(args)
    authenticator = Authenticator(args, handler)

    def factory():
        return MxSMTP(handler, args, hostname=args.hostname, tls_context=context,
                      data_size_limit=args.size or None, enable_SMTPUTF8=args.smtputf8,
                      decode_data=False, auth_required=args.auth_required,
                      authenticator=authenticator)

    server = await loop.create_server(factory, args.host, args.port)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
