"""The baseline the benchmark compares resume-chat-worker against: the straightforward boto3 worker
someone would write without this project, relying on botocore's *adaptive* retry mode (client-side
token bucket that slows down after throttles, plus exponential backoff retries) for Connect's quotas.

Protocol, per thread (THREADS threads, default 8, sharing one SQS client and one Connect client, so
the adaptive rate limiter is shared by the whole process as botocore intends):
  receive up to 10 jobs (long poll 2 s) -> for each job, in order:
  start_chat_contact(...) (or create_persistent_contact_association(...) for an
  `associatePersistentContact` job) with Config(retries={'mode': 'adaptive', 'max_attempts': 10})
  -> send one result (the contract's shape: jobId, messageId, status, contactId..., error,
  receiveCount, completedAt; attributes jobId/status) -> delete the job.
A Connect error left after botocore's retries (or a 4xx) becomes a `failed` result; the job is
deleted either way. The ClientToken is the jobId, so a redelivered job (a crash, or a result that
could not be published: the job is then left to reappear after the queue's visibility timeout)
replays its chat instead of opening a second one.

Configuration: the worker's own variable names (JOBS_QUEUE_URL, RESULTS_QUEUE_URL,
CONNECT_INSTANCE_ID, CONNECT_CONTACT_FLOW_ID, AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL_CONNECT,
AWS_REGION and credentials) plus BASELINE_THREADS. SIGTERM/SIGINT: stop receiving, finish the job
on the wire, give unstarted received jobs back (visibility 0), exit 0.
"""

import datetime
import json
import os
import signal
import sys
import threading

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

STOP = threading.Event()


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        print(f"baseline_worker: {name} is required", file=sys.stderr)
        sys.exit(2)
    return value


def make_clients():
    region = env("AWS_REGION", "us-east-1")
    sqs = boto3.client("sqs", region_name=region, endpoint_url=os.environ.get("AWS_ENDPOINT_URL_SQS"),
                       config=Config(retries={"mode": "standard"}, max_pool_connections=32))
    connect = boto3.client("connect", region_name=region, endpoint_url=os.environ.get("AWS_ENDPOINT_URL_CONNECT"),
                           config=Config(retries={"mode": "adaptive", "max_attempts": 10}, max_pool_connections=32))
    return sqs, connect


def handle(job_msg, connect, instance_id, flow_id):
    """Returns the result body (a dict) for one received message."""
    receive_count = int(job_msg.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
    result = {"jobId": None, "messageId": job_msg["MessageId"], "receiveCount": receive_count}
    try:
        job = json.loads(job_msg["Body"])
        result["jobId"] = job["jobId"]
        action = job.get("action", "startPersistentChat")
        result["action"] = action
        if action == "associatePersistentContact":
            out = connect.create_persistent_contact_association(
                InstanceId=job.get("instanceId", instance_id),
                InitialContactId=job["initialContactId"],
                RehydrationType=job.get("rehydrationType", "ENTIRE_PAST_SESSION"),
                SourceContactId=job["sourceContactId"],
                ClientToken=job["jobId"],
            )
            result.update(status="succeeded", continuedFromContactId=out.get("ContinuedFromContactId"))
        else:
            out = connect.start_chat_contact(
                InstanceId=job.get("instanceId", instance_id),
                ContactFlowId=job.get("contactFlowId", flow_id),
                ParticipantDetails={"DisplayName": job["participant"]["displayName"]},
                PersistentChat={"RehydrationType": job.get("rehydrationType", "ENTIRE_PAST_SESSION"),
                                "SourceContactId": job["sourceContactId"]},
                ClientToken=job["jobId"],
            )
            result.update(status="succeeded", contactId=out.get("ContactId"), participantId=out.get("ParticipantId"),
                          participantToken=out.get("ParticipantToken"),
                          continuedFromContactId=out.get("ContinuedFromContactId"))
    except ClientError as e:
        err = e.response.get("Error", {})
        result.update(status="failed", error={"code": err.get("Code", "Unknown"), "message": err.get("Message", "")})
    except (BotoCoreError, ValueError, KeyError, TypeError) as e:
        result.update(status="failed", error={"code": type(e).__name__, "message": str(e)})
    result["completedAt"] = now_rfc3339()
    return result


def loop(sqs, connect, jobs_url, results_url, instance_id, flow_id):
    while not STOP.is_set():
        try:
            got = sqs.receive_message(QueueUrl=jobs_url, MaxNumberOfMessages=10, WaitTimeSeconds=2,
                                      AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
        except (ClientError, BotoCoreError) as e:
            print(f"baseline_worker: receive failed: {e}", file=sys.stderr)
            STOP.wait(1)
            continue
        for i, m in enumerate(got):
            if STOP.is_set():
                # Give the unstarted rest back at once instead of leaving it invisible.
                for rest in got[i:]:
                    try:
                        sqs.change_message_visibility(QueueUrl=jobs_url, ReceiptHandle=rest["ReceiptHandle"],
                                                      VisibilityTimeout=0)
                    except (ClientError, BotoCoreError):
                        pass
                break
            result = handle(m, connect, instance_id, flow_id)
            try:
                attrs = {"status": {"DataType": "String", "StringValue": result["status"]}}
                if result["jobId"]:
                    attrs["jobId"] = {"DataType": "String", "StringValue": result["jobId"]}
                sqs.send_message(QueueUrl=results_url, MessageBody=json.dumps(result), MessageAttributes=attrs)
                sqs.delete_message(QueueUrl=jobs_url, ReceiptHandle=m["ReceiptHandle"])
            except (ClientError, BotoCoreError) as e:
                print(f"baseline_worker: settling failed: {e}", file=sys.stderr)


def main():
    jobs_url = env("JOBS_QUEUE_URL")
    results_url = env("RESULTS_QUEUE_URL")
    instance_id = env("CONNECT_INSTANCE_ID")
    flow_id = env("CONNECT_CONTACT_FLOW_ID")
    threads_n = int(env("BASELINE_THREADS", "8"))
    sqs, connect = make_clients()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: STOP.set())
    threads = [threading.Thread(target=loop, args=(sqs, connect, jobs_url, results_url, instance_id, flow_id),
                                daemon=True) for _ in range(threads_n)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(timeout=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
