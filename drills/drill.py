"""Shared machinery for the Portcullis drills (standard library only).

A drill starts the release binary on loopback with its own configuration and data directory,
drives it, checks what it promised, prints one PASS/FAIL summary with numbers and exits 0 only on
PASS. Whatever happens (failure, exception, Ctrl-C, SIGTERM, its own time limit) it stops every
process it started, by process id, and removes its directory; the processes it starts also get
SIGKILL from the kernel if the drill itself dies (PR_SET_PDEATHSIG).
"""

import ctypes
import json
import os
import queue
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BINARY = Path(os.environ.get("PORTCULLIS", REPO / "target/release/portcullis"))

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when the drill dies, however it dies."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def raise_fd_limit(wanted=65536):
    """Many sockets: raise the soft limit on open files (inherited by the server)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port(rng=None):
    """A free loopback port outside the kernel's ephemeral range. A server on an ephemeral port
    that dies can be "reached" by a client whose own ephemeral port happens to be the same: TCP
    connects the socket to itself and the client waits forever for a greeting."""
    import random
    import socket
    rng = rng or random.Random()
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    ranges = [r for r in ((10000, low - 1), (high + 1, 65000)) if r[1] - r[0] > 100]
    for _ in range(200):
        port = rng.randint(*rng.choice(ranges))
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port outside the ephemeral range")


class DrillTimeout(Exception):
    pass


class Stopped(Exception):
    pass


class Drill:
    """One run: a work directory, checks, numbers, clean-up, and the time limit."""

    def __init__(self, name, max_seconds):
        self.name = name
        self.started = time.monotonic()
        self.checks = []
        self.numbers = []
        self._cleanups = []
        self.processes = []
        self.work = Path(tempfile.mkdtemp(prefix=f"portcullis-drill-{name}-"))
        os.chmod(self.work, 0o755)
        self.on_cleanup(self._remove_work)
        self.max_seconds = max_seconds
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._stop)
        signal.signal(signal.SIGALRM, self._alarm)
        signal.alarm(int(max_seconds))

    def _stop(self, signum, _frame):
        raise Stopped(f"stopped by signal {signum}")

    def _alarm(self, _signum, _frame):
        raise DrillTimeout(f"the drill's own time limit ({self.max_seconds} s) was reached")

    def elapsed(self):
        return time.monotonic() - self.started

    def log(self, text):
        print(f"[{self.elapsed():7.1f}s] {text}", flush=True)

    def check(self, name, ok, detail=""):
        self.checks.append((name, bool(ok), detail))
        self.log(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
        return bool(ok)

    def number(self, name, value):
        self.numbers.append((name, value))

    def on_cleanup(self, function):
        self._cleanups.append(function)

    def _remove_work(self):
        if os.environ.get("KEEP"):
            print(f"KEEP set: work directory kept in {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def spawn(self, args, **kwargs):
        """Starts a process that is killed (by its pid) at clean-up if still running."""
        kwargs.setdefault("preexec_fn", _die_with_parent)
        process = subprocess.Popen([str(a) for a in args], **kwargs)
        self.processes.append(process)
        return process

    def cleanup(self):
        signal.alarm(0)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        while self._cleanups:
            function = self._cleanups.pop()
            try:
                function()
            except Exception as error:  # clean-up goes on whatever one step did
                print(f"clean-up step failed: {error}", file=sys.stderr)

    def summary(self):
        failed = [c for c in self.checks if not c[1]]
        verdict = "PASS" if self.checks and not failed else "FAIL"
        print()
        print(f"==== drill {self.name}: {verdict} ({len(self.checks) - len(failed)}/"
              f"{len(self.checks)} checks passed, {self.elapsed():.0f} s) ====")
        for name, value in self.numbers:
            print(f"  {name}: {value}")
        for name, _, detail in failed:
            print(f"  FAILED: {name}: {detail}")
        return 0 if verdict == "PASS" else 1


def run(name, max_seconds, main, args):
    """Runs main(drill, args) with the time limit and clean-up; exits with the verdict."""
    if not BINARY.exists():
        print(f"{BINARY} is missing: run `cargo build --release` (or set PORTCULLIS)",
              file=sys.stderr)
        sys.exit(2)
    drill = Drill(name, max_seconds)
    drill.log(f"drill {name}: binary {BINARY}, work directory {drill.work}")
    try:
        main(drill, args)
    except (DrillTimeout, Stopped) as error:
        drill.check("drill completed", False, str(error))
    except Exception:
        traceback.print_exc()
        drill.check("drill completed", False, "exception (traceback above)")
    finally:
        drill.cleanup()
    code = drill.summary()
    sys.exit(code)


class Server:
    """The release binary with a configuration file, started and stopped by pid."""

    def __init__(self, drill, config_text, name="server", env=None):
        self.drill = drill
        self.config = drill.work / f"{name}.toml"
        self.config.write_text(config_text)
        self.log_path = drill.work / f"{name}.log"
        self.listeners_expected = config_text.count("[[listener]]") or 2
        self.process = None
        self.addresses = []
        self.spool_line = ""
        self.env = env or {}
        drill.on_cleanup(self.stop_quietly)

    def start(self, timeout=60, config_text=None):
        if config_text is not None:
            self.config.write_text(config_text)
        env = dict(os.environ, PORTCULLIS_LOG=os.environ.get("PORTCULLIS_LOG", "warn"))
        env.update(self.env)
        log = open(self.log_path, "ab")
        self.process = self.drill.spawn(
            [BINARY, "serve", "--config", self.config],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env)
        log.close()
        lines = queue.Queue()

        def drain(stdout):
            for line in stdout:
                lines.put(line.decode(errors="replace"))
            lines.put(None)

        threading.Thread(target=drain, args=(self.process.stdout,), daemon=True).start()
        self.addresses = []
        self.spool_line = ""
        deadline = time.monotonic() + timeout
        # The start-up message ends with "Stop with ..."; listeners and the spool come before.
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"the server did not start within {timeout} s") from None
            if line is None:
                raise RuntimeError(f"the server exited at start: {self.log_tail()}")
            match = re.search(r"listening on (\S+) \((\w+)", line)
            if match:
                host, port = match.group(1).rsplit(":", 1)
                self.addresses.append((host.strip("[]"), int(port), match.group(2)))
            if "spool:" in line:
                self.spool_line = line.strip()
            if line.startswith("Stop with"):
                break
        if len(self.addresses) < self.listeners_expected:
            raise RuntimeError(f"the server reported {self.addresses}")
        return self

    def address(self, mode="submission"):
        for host, port, listener_mode in self.addresses:
            if listener_mode == mode:
                return host, port
        raise KeyError(mode)

    def target(self, mode="submission"):
        host, port = self.address(mode)
        return f"{host}:{port}"

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def rss_kb(self):
        return rss_kb(self.pid)

    def kill9(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout=60):
        """SIGTERM and the exit status (None and SIGKILL if it does not stop in time)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None

    def stop_quietly(self):
        if self.alive():
            self.process.kill()
            self.process.wait(timeout=30)

    def log_tail(self, lines=20):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def cli(self, *args, check=True, stdin=None, timeout=300):
        result = subprocess.run(
            [str(BINARY), *map(str, args), "--config", str(self.config)],
            input=stdin, capture_output=True, timeout=timeout, preexec_fn=_die_with_parent)
        if check and result.returncode != 0:
            raise RuntimeError(f"portcullis {' '.join(map(str, args))} exited "
                               f"{result.returncode}: {result.stderr.decode(errors='replace')}")
        return result

    def queue_list(self):
        return json.loads(self.cli("queue", "list", "--json").stdout)

    def queue_check(self):
        """(segments, messages, damaged, trailing, exit status, text) from `queue check`."""
        result = self.cli("queue", "check", check=False)
        text = result.stdout.decode(errors="replace").strip()
        match = re.search(r"(\d+) segment\(s\), (\d+) message\(s\), (\d+) damaged region\(s\), "
                          r"(\d+) trailing byte\(s\)", text)
        if not match:
            raise RuntimeError(f"queue check printed {text!r} {result.stderr!r}")
        return (*map(int, match.groups()), result.returncode, text)

    def queue_show(self, queue_id):
        result = self.cli("queue", "show", queue_id, check=False)
        return result.returncode, result.stdout


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """Samples a process's VmRSS in a thread; samples are (seconds since start, kB)."""

    def __init__(self, pid, interval=0.5):
        self.pid, self.interval = pid, interval
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = time.monotonic()

    def _run(self):
        while not self._stop.is_set():
            value = rss_kb(self.pid)
            if value:
                self.samples.append((time.monotonic() - self.t0, value))
            self._stop.wait(self.interval)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()

    def between(self, start, end):
        return [kb for t, kb in self.samples if start <= t <= end]


def mib(kb):
    return f"{kb / 1024:.1f} MiB"


def bench(drill, target, *args, timeout=600, record=None, prefix=None):
    """`portcullis bench TARGET ARGS --json`; returns the report (dict) and the wall time."""
    command = [BINARY, "bench", target, *args, "--json"]
    if record:
        command += ["--record-ids", record, "--marker-prefix", prefix]
    started = time.monotonic()
    process = drill.spawn(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=timeout)
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"bench failed ({process.returncode}): {err.decode(errors='replace')}")
    return json.loads(out), wall


def read_records(path):
    """The lines `bench --record-ids` wrote: acknowledged {marker: id}, refused {marker: reply},
    unknown {marker: error}."""
    acknowledged, refused, unknown = {}, {}, {}
    if not Path(path).exists():
        return acknowledged, refused, unknown
    for line in Path(path).read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 2:
            continue
        if fields[0] == "-":
            refused[fields[1]] = fields[2] if len(fields) > 2 else ""
        elif fields[0] == "?":
            unknown[fields[1]] = fields[2] if len(fields) > 2 else ""
        else:
            acknowledged[fields[1]] = fields[0]
    return acknowledged, refused, unknown


MARKER = re.compile(rb"\r\nMessage-ID: <([^>@\r\n]+)@portcullis\.bench>\r\n")


class SpoolReader:
    """Reads records straight from the segment files, independently of the server's code: the
    layout is magic "PCM1", header length (u32 LE), body length (u64 LE), CRC-32 of header and
    body (u32 LE), the JSON header, the body; a queue id is 8 hex digits of segment number and 8
    of offset (src/spool/record.rs, src/spool/log.rs)."""

    def __init__(self, spool_dir):
        self.segments = {}
        for path in Path(spool_dir).glob("segment-*.log"):
            number = int(path.name[len("segment-"):-len(".log")])
            self.segments[number] = path.read_bytes()

    def read(self, queue_id):
        """(header, body) of the record at queue_id, or raises ValueError saying what is wrong."""
        segment, offset = int(queue_id[:8], 16), int(queue_id[8:], 16)
        data = self.segments.get(segment)
        if data is None:
            raise ValueError(f"segment {segment} does not exist")
        if data[offset:offset + 4] != b"PCM1":
            raise ValueError(f"no record starts at offset {offset} of segment {segment}")
        header_len, body_len, crc = struct.unpack_from("<IQI", data, offset + 4)
        start = offset + 20
        end = start + header_len + body_len
        if end > len(data):
            raise ValueError("the record runs past the end of its segment (partial)")
        header_bytes = data[start:start + header_len]
        body = data[start + header_len:end]
        if zlib.crc32(body, zlib.crc32(header_bytes)) != crc:
            raise ValueError("checksum mismatch")
        header = json.loads(header_bytes)
        if header.get("id", "").upper() != queue_id.upper():
            raise ValueError(f"the record there has id {header.get('id')}")
        return header, body


def marker_of(body):
    match = MARKER.search(body)
    return match.group(1).decode() if match else None


def intact(body, marker, size):
    """The message bench sent for this marker, whole: our Received: header, then exactly `size`
    octets starting with From:, the marker in Subject: and Message-ID:, ending with "end"."""
    start = body.find(b"\r\nFrom: <")
    return (start >= 0
            and len(body) - (start + 2) == size
            and f"\r\nSubject: portcullis bench {marker}\r\n".encode() in body
            and f"\r\nMessage-ID: <{marker}@portcullis.bench>\r\n".encode() in body
            and body.endswith(b"\r\nend\r\n"))


def percentile(values, q):
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered), max(1, int(-(-len(ordered) * q // 1)))) - 1
    return ordered[index]


async def read_reply(reader):
    """The last line of one reply from an asyncio StreamReader, or None at end of stream."""
    while True:
        line = await reader.readline()
        if not line:
            return None
        text = line.decode(errors="replace").rstrip("\r\n")
        if len(text) < 4 or text[3] != "-":
            return text


class Smtp:
    """A small blocking SMTP client over plain TCP, for exact control in the drills."""

    def __init__(self, host, port, source=None, timeout=30):
        import socket
        self.sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None)
        self.file = self.sock.makefile("rb")

    def reply(self):
        """(code, last line as text); (None, "") when the connection is closed."""
        while True:
            line = self.file.readline()
            if not line:
                return None, ""
            text = line.decode(errors="replace").rstrip("\r\n")
            if len(text) < 4 or text[3] != "-":
                try:
                    return int(text[:3]), text
                except ValueError:
                    return None, text

    def command(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def message(self, sender, recipient, body):
        """MAIL, RCPT, DATA, the body and the dot; the last reply (or the first refusal)."""
        for line, expected in ((f"MAIL FROM:<{sender}>", 250), (f"RCPT TO:<{recipient}>", 250),
                               ("DATA", 354)):
            code, text = self.command(line)
            if code != expected:
                return code, text
        self.sock.sendall(body + b".\r\n")
        return self.reply()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def marked_message(marker, size=1024):
    """A message with the same marker fields as `bench --record-ids` messages."""
    head = (f"From: <drill@example.test>\r\nTo: <sink@example.net>\r\n"
            f"Subject: portcullis bench {marker}\r\n"
            f"Message-ID: <{marker}@portcullis.bench>\r\n\r\n")
    filler = size - len(head) - len("\r\nend\r\n")
    return (head + "x" * max(filler, 1) + "\r\nend\r\n").encode()
