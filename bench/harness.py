"""Processes and queues of one benchmark run, all on 127.0.0.1 loopback ports:

- `Moto`: moto's server (`.venv/bin/moto_server`), one per run, so every run starts from empty queues.
- `Sim`: the `connect-sim` binary; its first stdout line `connect-sim listening on http://IP:PORT`
  gives the URL; `/_sim/stats` and `/_sim/reset` are read and posted with urllib.
- `Queues`: jobs (VisibilityTimeout 60, redrive to the DLQ after 15 receives, above the worker's
  MAX_RECEIVE_COUNT of 10), results and DLQ (and `contact-events` for the scenarios with contact events); batch enqueue; result draining deduplicated by jobId
  (SQS and moto deliver at least once).
- `Proc`: a worker process (ours or the baseline) with its CPU (utime+stime from /proc/PID/stat)
  and memory (VmHWM/VmRSS from /proc/PID/status), stopped with SIGTERM.
Everything started here is stopped by `close()`; run.py closes in `finally` blocks.
"""

import concurrent.futures
import json
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.request

import boto3
from botocore.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
# BENCH_BIN_DIR (e.g. target/debug) only to try the harness out; numbers come from release builds.
RELEASE = pathlib.Path(os.environ.get("BENCH_BIN_DIR", ROOT / "target" / "release"))
REGION = "us-east-1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_FLAGS = {}


def sim_has_flag(flag):
    """Whether this connect-sim binary knows `flag` (from its --help; cached)."""
    if "help" not in _FLAGS:
        try:
            _FLAGS["help"] = subprocess.run([str(RELEASE / "connect-sim"), "--help"], stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            _FLAGS["help"] = ""
    return flag in _FLAGS["help"]


def http(url, method="GET", timeout=5):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


class Moto:
    def __init__(self, log_dir):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_dir / "moto.log", "wb")
        self.proc = subprocess.Popen([str(VENV / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            try:
                http(self.url + "/moto-api/", timeout=2)
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("moto_server did not start within 30 s")
                time.sleep(0.1)

    def close(self):
        stop(self.proc)
        self.log.close()


class Sim:
    def __init__(self, flags, log_dir, env=None):
        """`env`: extra environment (the AWS credentials its contact events are signed with)."""
        self.log = open(log_dir / "connect-sim.log", "wb")
        self.proc = subprocess.Popen([str(RELEASE / "connect-sim"), "--addr", "127.0.0.1:0", *flags],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env={**os.environ, **env} if env else None)
        line = self.proc.stdout.readline().strip()
        prefix = "connect-sim listening on "
        if not line.startswith(prefix):
            raise RuntimeError(f"connect-sim: unexpected first line {line!r}")
        self.url = line[len(prefix):]

    def stats(self):
        return json.loads(http(self.url + "/_sim/stats", timeout=30)[1])

    def reset(self):
        http(self.url + "/_sim/reset", method="POST")

    def close(self):
        stop(self.proc)
        self.log.close()


class Redis:
    """A private redis-server on a free port (REDIS_SERVER, else on PATH; scripts/redis.sh installs it)."""

    def __init__(self, log_dir):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.log = open(log_dir / "redis.log", "wb")
        binary = os.environ.get("REDIS_SERVER", "redis-server")
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=self.log, stderr=subprocess.STDOUT)
        time.sleep(0.3)

    def close(self):
        stop(self.proc)
        self.log.close()


def stop(proc, grace=10):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sqs_client(endpoint):
    return boto3.client("sqs", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="test",
                        aws_secret_access_key="test",
                        config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=16))


class Queues:
    def __init__(self, moto, contact_events=False):
        """`contact_events`: also a standard queue `contact-events` (`self.contact_events`, else None)
        that connect-sim sends its EventBridge DISCONNECTED events to."""
        self.sqs = sqs_client(moto.url)
        self.contact_events = self.sqs.create_queue(QueueName="contact-events")["QueueUrl"] if contact_events \
            else None
        self.dlq = self.sqs.create_queue(QueueName="dlq")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "15"})
        self.jobs = self.sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "60",
                                                                        "RedrivePolicy": redrive})["QueueUrl"]
        self.results = self.sqs.create_queue(QueueName="results")["QueueUrl"]
        self.seen = {}
        self.duplicate_results = 0

    def enqueue(self, bodies):
        chunks = [bodies[i:i + 10] for i in range(0, len(bodies), 10)]

        def send(chunk):
            entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)]
            out = self.sqs.send_message_batch(QueueUrl=self.jobs, Entries=entries)
            if out.get("Failed"):
                raise RuntimeError(f"enqueue failed: {out['Failed']}")

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(send, chunks))

    def drain_once(self, wait=1):
        """One receive on the results queue; records first results by jobId; returns how many arrived."""
        out = self.sqs.receive_message(QueueUrl=self.results, MaxNumberOfMessages=10, WaitTimeSeconds=wait,
                                       AttributeNames=["SentTimestamp"])
        msgs = out.get("Messages", [])
        received_at = time.time()
        for m in msgs:
            try:
                body = json.loads(m["Body"])
            except ValueError:
                body = {"jobId": None, "raw": m["Body"]}
            job_id = body.get("jobId")
            if job_id in self.seen:
                self.duplicate_results += 1
            else:
                body["_received_at"] = received_at
                # When moto stored the result (the worker's SendMessage reached the queue), Unix seconds.
                sent_ms = m.get("Attributes", {}).get("SentTimestamp")
                body["_published_at"] = int(sent_ms) / 1000 if sent_ms else None
                self.seen[job_id] = body
        if msgs:
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)]
            self.sqs.delete_message_batch(QueueUrl=self.results, Entries=entries)
        return len(msgs)

    def drain_until(self, job_ids, timeout, on_progress=None):
        deadline = time.time() + timeout
        wanted = set(job_ids)
        while time.time() < deadline and not wanted.issubset(self.seen):
            self.drain_once()
            if on_progress:
                on_progress(len(wanted & self.seen.keys()))
        return wanted.issubset(self.seen)

    def drain_rest(self, limit_s):
        """Receives until the results queue is empty (two empty receives and a depth of 0), at most `limit_s`."""
        deadline = time.time() + limit_s
        empty = 0
        while time.time() < deadline and empty < 2:
            empty = 0 if self.drain_once(wait=1) else empty + 1
            if empty == 2 and self.depth(self.results) > 0:
                empty = 0

    def depth(self, url):
        a = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return int(a.get("ApproximateNumberOfMessages", 0)) + int(a.get("ApproximateNumberOfMessagesNotVisible", 0)) \
            + int(a.get("ApproximateNumberOfMessagesDelayed", 0))


class Proc:
    """A worker process and its log."""

    def __init__(self, argv, env, log_path):
        self.log = open(log_path, "wb")
        self.started = time.time()
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def cpu_seconds(self):
        try:
            stat = pathlib.Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def status_mib(self, key):
        try:
            for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith(key):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None

    def kill(self):
        """SIGKILL: no shutdown, nothing given back (a crashed or OOM-killed task)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)

    def terminate(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "killed"

    def close(self):
        stop(self.proc, grace=5)
        self.log.close()
