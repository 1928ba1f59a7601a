"""Contact events end to end: connect-sim with --contact-events-queue-url sends one EventBridge
DISCONNECTED envelope per ended chat to an SQS queue of moto's server, signed with the standard
env credentials (SigV4), also when moto enforces IAM.

Setup as test_wire.py (scripts/python-env.sh, cargo build -p connect-sim), then
    .venv/bin/python -m pytest sim/tests/python -q
"""

import json
import os
import pathlib
import socket
import subprocess
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config

REPO = pathlib.Path(__file__).resolve().parents[3]
BIN = os.environ.get("CONNECT_SIM_BIN", str(REPO / "target" / "debug" / "connect-sim"))
MOTO = REPO / ".venv" / "bin" / "moto_server"
INSTANCE = "inst-1"
REGION = "us-east-1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    def __init__(self, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([str(MOTO), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})})
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=2).read()
                return
            except OSError:
                assert time.time() < deadline and self.proc.poll() is None, "moto_server did not start"
                time.sleep(0.1)

    def client(self, service, key="test", secret="test"):
        return boto3.client(service, region_name=REGION, endpoint_url=self.url, aws_access_key_id=key,
                            aws_secret_access_key=secret)

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Sim:
    def __init__(self, flags, env):
        self.proc = subprocess.Popen([BIN, "--addr", "127.0.0.1:0", *flags], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)
        line = self.proc.stdout.readline().strip()
        prefix = "connect-sim listening on "
        assert line.startswith(prefix), f"unexpected first line: {line!r}"
        self.url = line[len(prefix):]

    def connect(self):
        cfg = Config(retries={"total_max_attempts": 1, "mode": "standard"})
        return boto3.client("connect", region_name=REGION, endpoint_url=self.url, aws_access_key_id="AKID",
                            aws_secret_access_key="SECRET", config=cfg)

    def stats(self):
        with urllib.request.urlopen(self.url + "/_sim/stats", timeout=5) as r:
            return json.load(r)

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def sim_env(key, secret):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret, AWS_REGION=REGION,
               AWS_EC2_METADATA_DISABLED="true")
    return env


@pytest.fixture
def procs():
    started = []
    yield started
    for p in reversed(started):
        p.close()


def start_chats(sim, n):
    connect = sim.connect()
    return [connect.start_chat_contact(InstanceId=INSTANCE, ContactFlowId="flow-1",
                                       ParticipantDetails={"DisplayName": "Ana"},
                                       ClientToken=f"tok-{i}")["ContactId"] for i in range(n)]


def receive(sqs, url, n, timeout=20):
    got = []
    deadline = time.time() + timeout
    while len(got) < n and time.time() < deadline:
        out = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                  AttributeNames=["SentTimestamp"])
        for m in out.get("Messages", []):
            got.append((json.loads(m["Body"]), int(m["Attributes"]["SentTimestamp"]) / 1000))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return got


def test_every_ended_chat_sends_one_disconnected_event(procs):
    moto = Moto()
    procs.append(moto)
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName="contact-events")["QueueUrl"]
    sim = Sim(["--chat-seconds", "1", "--connect-window-seconds", "0", "--seed", "4",
               "--contact-events-queue-url", url, "--contact-events-delay-ms", "250:750"],
              sim_env("test", "test"))
    procs.append(sim)
    started = time.time()
    ids = start_chats(sim, 3)
    got = receive(sqs, url, 3)
    assert sorted(b["detail"]["contactId"] for b, _ in got) == sorted(ids)
    arn = f"arn:aws:connect:{REGION}:123456789012:instance/{INSTANCE}"
    for body, sent_at in got:
        cid = body["detail"]["contactId"]
        assert set(body) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources",
                             "detail"}
        assert (body["version"], body["detail-type"], body["source"]) == ("0", "Amazon Connect Contact Event",
                                                                          "aws.connect")
        assert (body["account"], body["region"]) == ("123456789012", REGION)
        assert body["resources"] == [f"{arn}/contact/{cid}", arn]
        assert body["detail"] == {
            "eventType": "DISCONNECTED", "contactId": cid, "initialContactId": cid, "channel": "CHAT",
            "instanceArn": arn, "initiationMethod": "API",
            "initiationTimestamp": body["detail"]["initiationTimestamp"],
            "disconnectTimestamp": body["detail"]["disconnectTimestamp"],
        }
        # Delivered after the chat's end (1 s after its start), within the delay plus moto's time.
        assert 1.2 <= sent_at - started <= 4.0, sent_at - started
    assert len({b["id"] for b, _ in got}) == 3
    assert sim.stats()["contact_events"] == {"sent": 3, "failed": 0}
    # Nothing more: one event per chat.
    assert receive(sqs, url, 1, timeout=2) == []


def test_events_are_sigv4_signed_and_a_refused_send_is_counted(procs):
    # moto enforces IAM once these first unauthenticated calls are used up (user, key, policy, queue).
    moto = Moto({"INITIAL_NO_AUTH_ACTION_COUNT": "4"})
    procs.append(moto)
    iam = moto.client("iam")
    iam.create_user(UserName="sim")
    key = iam.create_access_key(UserName="sim")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="sim", PolicyName="sqs", PolicyDocument=json.dumps(policy))
    sqs = moto.client("sqs", key["AccessKeyId"], key["SecretAccessKey"])
    url = sqs.create_queue(QueueName="contact-events")["QueueUrl"]
    flags = ["--chat-seconds", "0.5", "--connect-window-seconds", "0", "--contact-events-queue-url", url,
             "--contact-events-delay-ms", "0:50"]
    good = Sim(flags, sim_env(key["AccessKeyId"], key["SecretAccessKey"]))
    procs.append(good)
    ids = start_chats(good, 2)
    got = receive(sqs, url, 2)
    assert sorted(b["detail"]["contactId"] for b, _ in got) == sorted(ids)
    assert good.stats()["contact_events"] == {"sent": 2, "failed": 0}

    # A wrong secret: moto refuses the signature, the sim retries, gives up and counts it.
    bad = Sim(flags, sim_env(key["AccessKeyId"], "wrong-secret"))
    procs.append(bad)
    start_chats(bad, 1)
    deadline = time.time() + 15
    while time.time() < deadline and bad.stats()["contact_events"]["failed"] == 0:
        time.sleep(0.2)
    assert bad.stats()["contact_events"] == {"sent": 0, "failed": 1}
    assert receive(sqs, url, 1, timeout=2) == []
