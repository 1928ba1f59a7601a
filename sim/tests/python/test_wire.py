"""connect-sim driven by boto3, an AWS client independent of our Rust code, so the wire
format is not shaped around aws-sdk-connect: botocore must parse every success shape and
every error code, raising the modeled exception class where its service model has one
(LimitExceededException for StartChatContact, ThrottlingException and AccessDeniedException
for CreatePersistentContactAssociation) and a ClientError carrying the code otherwise
(TooManyRequestsException).

Setup: scripts/python-env.sh; build the binary (cargo build -p connect-sim); then
    .venv/bin/python -m pytest sim/tests/python -q
The binary comes from $CONNECT_SIM_BIN (default target/debug/connect-sim at the repo root).
"""

import json
import os
import pathlib
import subprocess
import urllib.request

import boto3
import botocore
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

REPO = pathlib.Path(__file__).resolve().parents[3]
BIN = os.environ.get("CONNECT_SIM_BIN", str(REPO / "target" / "debug" / "connect-sim"))
INSTANCE = "11111111-2222-3333-4444-555555555555"
ROOMY = ["--start-chat-rate", "1000", "--start-chat-burst", "1000",
         "--associate-rate", "1000", "--associate-burst", "1000"]


class Sim:
    def __init__(self, *flags):
        self.proc = subprocess.Popen(
            [BIN, "--addr", "127.0.0.1:0", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().strip()
        prefix = "connect-sim listening on "
        assert line.startswith(prefix), f"unexpected first line: {line!r}"
        self.url = line[len(prefix):]

    def client(self, **config):
        # botocore: "max_attempts" counts retries after the first call; "total_max_attempts"
        # counts all calls. 1 in total: every call is exactly one request.
        cfg = Config(retries={"total_max_attempts": 1, "mode": "standard"}, **config)
        return boto3.client(
            "connect", region_name="us-east-1", endpoint_url=self.url,
            aws_access_key_id="AKID", aws_secret_access_key="SECRET", config=cfg)

    def stats(self):
        with urllib.request.urlopen(self.url + "/_sim/stats", timeout=5) as r:
            return json.load(r)

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def sim_factory():
    started = []

    def make(*flags):
        s = Sim(*flags)
        started.append(s)
        return s

    yield make
    for s in started:
        s.close()


def start_chat(client, source="past-1", **extra):
    params = dict(
        InstanceId=INSTANCE, ContactFlowId="flow-1",
        ParticipantDetails={"DisplayName": "Ana"},
        PersistentChat={"RehydrationType": "ENTIRE_PAST_SESSION", "SourceContactId": source},
    )
    params.update(extra)
    return client.start_chat_contact(**params)


def associate(client, initial="current-1", source="past-1", **extra):
    return client.create_persistent_contact_association(
        InstanceId=INSTANCE, InitialContactId=initial,
        RehydrationType="FROM_SEGMENT", SourceContactId=source, **extra)


def test_start_chat_contact_200(sim_factory):
    sim = sim_factory(*ROOMY)
    out = start_chat(sim.client(), InitialMessage={"ContentType": "text/plain", "Content": "hi"},
                     Attributes={"tier": "gold"}, SupportedMessagingContentTypes=["text/plain"])
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert out["ResponseMetadata"]["RequestId"]
    assert len(out["ContactId"]) == 36
    assert out["ParticipantId"] and out["ParticipantToken"]
    assert out["ContinuedFromContactId"] == "past-1"
    assert sim.stats()["operations"]["StartChatContact"]["ok"] == 1


def test_create_persistent_contact_association_200(sim_factory):
    sim = sim_factory(*ROOMY)
    out = associate(sim.client(), ClientToken="t-1")
    assert out["ContinuedFromContactId"] == "past-1"


def test_limit_exceeded_is_the_modeled_exception(sim_factory):
    sim = sim_factory(*ROOMY, "--max-active-chats", "1")
    client = sim.client()
    start_chat(client, "s1")
    with pytest.raises(client.exceptions.LimitExceededException) as exc:
        start_chat(client, "s2")
    err = exc.value.response
    assert err["Error"]["Code"] == "LimitExceededException"
    assert err["Error"]["Message"]
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert sim.stats()["operations"]["StartChatContact"]["limit_exceeded"] == 1


def test_too_many_requests_keeps_its_code(sim_factory):
    sim = sim_factory("--start-chat-rate", "0", "--start-chat-burst", "1")
    client = sim.client()
    start_chat(client, "s1")
    with pytest.raises(ClientError) as exc:
        start_chat(client, "s2")
    err = exc.value.response
    assert err["Error"]["Code"] == "TooManyRequestsException"
    assert err["Error"]["Message"] == "Rate exceeded"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert sim.stats()["operations"]["StartChatContact"]["throttled"] == 1


def test_throttling_is_the_modeled_exception_for_associate(sim_factory):
    sim = sim_factory("--associate-rate", "0", "--associate-burst", "1")
    client = sim.client()
    associate(client, "i1")
    with pytest.raises(client.exceptions.ThrottlingException) as exc:
        associate(client, "i2")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429


def test_invalid_parameter_names_the_field(sim_factory):
    sim = sim_factory(*ROOMY)
    # Turn off botocore's own client-side validation so the server's is exercised.
    client = sim.client(parameter_validation=False)
    with pytest.raises(client.exceptions.InvalidParameterException) as exc:
        start_chat(client, ChatDurationInMinutes=30)
    assert "ChatDurationInMinutes" in exc.value.response["Error"]["Message"]
    with pytest.raises(client.exceptions.InvalidParameterException) as exc:
        client.start_chat_contact(InstanceId=INSTANCE, ContactFlowId="f")
    assert "ParticipantDetails" in exc.value.response["Error"]["Message"]


def test_invalid_request_names_the_field(sim_factory):
    sim = sim_factory(*ROOMY)
    client = sim.client()
    with pytest.raises(client.exceptions.InvalidRequestException) as exc:
        start_chat(client, SupportedMessagingContentTypes=["text/markdown"])
    assert "text/plain" in exc.value.response["Error"]["Message"]
    with pytest.raises(client.exceptions.InvalidRequestException) as exc:
        start_chat(client, InitialMessage={"ContentType": "text/plain", "Content": "x" * 1025})
    assert "InitialMessage.Content" in exc.value.response["Error"]["Message"]
    with pytest.raises(client.exceptions.InvalidRequestException) as exc:
        start_chat(client, RelatedContactId="r-1")
    assert "RelatedContactId" in exc.value.response["Error"]["Message"]
    assert sim.stats()["operations"]["StartChatContact"]["invalid"] == 3


def test_resource_not_found(sim_factory):
    sim = sim_factory(*ROOMY, "--instance-id", INSTANCE)
    client = sim.client()
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        start_chat(client, "missing-1")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.create_persistent_contact_association(
            InstanceId="other", InitialContactId="c", RehydrationType="FROM_SEGMENT",
            SourceContactId="s")


def test_unsigned_request_is_access_denied(sim_factory):
    sim = sim_factory(*ROOMY)
    client = sim.client(signature_version=botocore.UNSIGNED)
    with pytest.raises(client.exceptions.AccessDeniedException) as exc:
        associate(client)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as exc:
        start_chat(client)
    assert exc.value.response["Error"]["Code"] == "AccessDeniedException"


def test_internal_service_exception(sim_factory):
    sim = sim_factory(*ROOMY, "--fail-rate", "1")
    client = sim.client()
    with pytest.raises(client.exceptions.InternalServiceException) as exc:
        start_chat(client)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert sim.stats()["operations"]["StartChatContact"]["server_error"] == 1


def test_idempotent_replay_and_mismatch(sim_factory):
    sim = sim_factory(*ROOMY)
    client = sim.client()
    first = start_chat(client, "s1", ClientToken="job-1")
    again = start_chat(client, "s1", ClientToken="job-1")
    assert again["ContactId"] == first["ContactId"]
    with pytest.raises(client.exceptions.InvalidRequestException):
        start_chat(client, "s2", ClientToken="job-1")
    stats = sim.stats()
    assert stats["chats_created"] == 1
    assert stats["operations"]["StartChatContact"]["idempotent_replays"] == 1


def test_stats_shape_and_reset(sim_factory):
    sim = sim_factory(*ROOMY)
    start_chat(sim.client())
    stats = sim.stats()
    for op in ("StartChatContact", "CreatePersistentContactAssociation"):
        assert set(stats["operations"][op]) == {
            "ok", "throttled", "limit_exceeded", "invalid", "not_found", "access_denied",
            "server_error", "dropped", "idempotent_replays"}
    assert set(stats) == {"operations", "active_chats", "peak_active_chats", "chats_created",
                          "duplicate_source_chats", "chats_abandoned", "background",
                          "timeline", "epoch_unix_ms", "instances", "chats", "calls",
                          "records_dropped", "contact_events"}
    assert stats["contact_events"] == {"sent": 0, "failed": 0}
    assert set(stats["timeline"][0]) == {"second", "StartChatContact",
                                         "CreatePersistentContactAssociation", "background"}
    req = urllib.request.Request(sim.url + "/_sim/reset", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 204
    assert sim.stats()["chats_created"] == 0


def participant_client(sim):
    cfg = Config(retries={"total_max_attempts": 1, "mode": "standard"})
    return boto3.client(
        "connectparticipant", region_name="us-east-1", endpoint_url=sim.url,
        aws_access_key_id="AKID", aws_secret_access_key="SECRET", config=cfg)


def test_create_participant_connection_keeps_the_chat_past_its_window(sim_factory):
    import time
    sim = sim_factory(*ROOMY, "--connect-window-seconds", "1", "--chat-seconds", "30",
                      "--past-session", "C1>C2>C3")
    client = sim.client()
    joined = start_chat(client, "C1")
    # ENTIRE_PAST_SESSION continues from the session's most recent contact.
    assert joined["ContinuedFromContactId"] == "C3"
    lone = start_chat(client, "other-1")
    out = participant_client(sim).create_participant_connection(
        Type=["WEBSOCKET", "CONNECTION_CREDENTIALS"], ParticipantToken=joined["ParticipantToken"],
        ConnectParticipant=True)
    assert out["Websocket"]["Url"].startswith("wss://")
    assert out["ConnectionCredentials"]["ConnectionToken"]
    time.sleep(1.5)
    stats = sim.stats()
    assert (stats["active_chats"], stats["chats_abandoned"]) == (1, 1)
    with pytest.raises(ClientError) as e:
        participant_client(sim).create_participant_connection(
            Type=["WEBSOCKET"], ParticipantToken=lone["ParticipantToken"])
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with urllib.request.urlopen(sim.url + "/_sim/contacts/" + joined["ContactId"], timeout=5) as r:
        contact = json.load(r)
    assert contact["Connected"] is True and contact["InitialContactId"] == "C1"


def test_session_rules_and_custom_durations_answer_invalid_request(sim_factory):
    sim = sim_factory(*ROOMY, "--no-custom-chat-durations")
    client = sim.client()
    for source in ("active-1", "voice-1"):
        with pytest.raises(client.exceptions.InvalidRequestException):
            start_chat(client, source)
    with pytest.raises(client.exceptions.InvalidRequestException) as e:
        start_chat(client, "s-1", ChatDurationInMinutes=60)
    assert "ChatDurationInMinutes" in e.value.response["Error"]["Message"]
    with pytest.raises(client.exceptions.InvalidParameterException):
        start_chat(client, "s-2", SegmentAttributes={"bad key!": {"ValueString": "x"}})
    with pytest.raises(client.exceptions.InvalidRequestException):
        start_chat(client, "s-3", SegmentAttributes={
            "connect:Subtype": {"ValueString": "connect:Guide"}})
