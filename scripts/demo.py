"""Demo orchestration: starts moto's SQS, connect-sim and resume-chat-worker on loopback ports,
sends the sample jobs, prints every result as it arrives and the metrics address."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "demo"
JOBS = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "examples" / "jobs.jsonl"
CREDS = {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception:
            time.sleep(0.1)
    sys.exit(f"demo: {url} did not come up")


def stop_all(*_):
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.update(CREDS)
    moto_port = free_port()
    moto = f"http://127.0.0.1:{moto_port}"
    procs.append(subprocess.Popen([str(ROOT / ".venv/bin/moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
                                  stdout=open(OUT / "moto.log", "w"), stderr=subprocess.STDOUT))
    wait_http(moto + "/moto-api/")

    sqs = boto3.client("sqs", endpoint_url=moto)
    # Connect's contact events, as the stack's EventBridge rule delivers them: connect-sim sends
    # each ended chat's DISCONNECTED event here, the worker reads it (CONTACT_EVENTS_QUEUE_URL).
    events = sqs.create_queue(QueueName="resume-chat-contact-events")["QueueUrl"]

    sim_proc = subprocess.Popen([str(ROOT / "target/debug/connect-sim"), "--addr", "127.0.0.1:0",
                                 "--start-chat-rate", "5", "--start-chat-burst", "5",
                                 "--max-active-chats", "6", "--chat-seconds", "8",
                                 "--contact-events-queue-url", events],
                                stdout=subprocess.PIPE, stderr=open(OUT / "sim.log", "w"), text=True)
    procs.append(sim_proc)
    sim = sim_proc.stdout.readline().strip().rsplit(" ", 1)[-1]

    dlq = sqs.create_queue(QueueName="resume-chat-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    jobs = sqs.create_queue(QueueName="resume-chat-jobs", Attributes={
        "VisibilityTimeout": "30",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "15"})})["QueueUrl"]
    results = sqs.create_queue(QueueName="resume-chat-results")["QueueUrl"]

    # Redis for the fleet-wide rate limiter (GCRA), as in a multi-replica deployment.
    redis_port = free_port()
    procs.append(subprocess.Popen([os.environ.get("REDIS_SERVER", "redis-server"), "--port", str(redis_port),
                                   "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                                  stdout=open(OUT / "redis.log", "w"), stderr=subprocess.STDOUT))

    metrics_addr = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, JOBS_QUEUE_URL=jobs, RESULTS_QUEUE_URL=results, DEAD_LETTER_QUEUE_URL=dlq,
               CONTACT_EVENTS_QUEUE_URL=events,
               CONNECT_INSTANCE_ID="demo-instance", CONNECT_CONTACT_FLOW_ID="demo-flow",
               AWS_ENDPOINT_URL_SQS=moto, AWS_ENDPOINT_URL_CONNECT=sim, START_CHAT_RATE="5", START_CHAT_BURST="5",
               METRICS_ADDR=metrics_addr, REDIS_URL=f"redis://127.0.0.1:{redis_port}", LOG_FORMAT=os.environ.get("LOG_FORMAT", "json"))
    procs.append(subprocess.Popen([str(ROOT / "target/debug/resume-chat-worker")], env=env,
                                  stdout=subprocess.DEVNULL, stderr=open(OUT / "worker.log", "w")))
    wait_http(f"http://{metrics_addr}/healthz")

    lines = [l for l in JOBS.read_text().splitlines() if l.strip()]
    for i in range(0, len(lines), 10):
        sqs.send_message_batch(QueueUrl=jobs, Entries=[{"Id": str(n), "MessageBody": b} for n, b in enumerate(lines[i:i + 10])])

    print(f"\nmoto SQS:        {moto}\nconnect-sim:     {sim}  (counters: {sim}/_sim/stats)")
    print(f"redis:           redis://127.0.0.1:{redis_port}  (fleet rate limiter)")
    print(f"contact events:  {events}  (chat ends, as EventBridge delivers them)")
    print(f"worker metrics:  http://{metrics_addr}/metrics   health: /healthz   ready: /readyz")
    print(f"logs:            {OUT}/worker.log\n\nsent {len(lines)} sample jobs from {JOBS.relative_to(ROOT)}; results:\n")

    seen = set()
    deadline = time.time() + 120
    while len(seen) < len(lines) and time.time() < deadline:
        resp = sqs.receive_message(QueueUrl=results, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for m in resp.get("Messages", []):
            r = json.loads(m["Body"])
            sqs.delete_message(QueueUrl=results, ReceiptHandle=m["ReceiptHandle"])
            if r.get("messageId") in seen:
                continue
            seen.add(r.get("messageId"))
            if r["status"] == "succeeded":
                token = r.get("participantToken")
                detail = f"contact {r.get('contactId', '-')}, continues {r.get('continuedFromContactId')}" + \
                         (f", token {token[:10]}…" if token else "")
            else:
                detail = f"{r['error']['code']}: {r['error']['message']}"
            print(f"  {str(r.get('jobId')):9} {r['status']:9} receive #{r['receiveCount']}  {detail}")

    stats = json.load(urllib.request.urlopen(sim + "/_sim/stats"))
    op = stats["operations"]["StartChatContact"]
    print(f"\nconnect-sim: StartChatContact ok={op['ok']} throttled={op['throttled']} "
          f"limit_exceeded={op['limit_exceeded']} not_found={op['not_found']}; peak active chats {stats['peak_active_chats']}; "
          f"contact events sent {stats.get('contact_events', {}).get('sent', 0)}")
    metrics = urllib.request.urlopen(f"http://{metrics_addr}/metrics").read().decode()
    print("worker metrics (excerpt):")
    for line in metrics.splitlines():
        if line.startswith(("resume_chat_jobs_completed_total", "resume_chat_connect_calls_total", "resume_chat_allowed_rate",
                            "resume_chat_fleet_limiter_state", "resume_chat_contact_events_total")):
            print("  " + line)
    if len(seen) < len(lines):
        print(f"\ndemo: only {len(seen)} of {len(lines)} results arrived", file=sys.stderr)
        stop_all()
        sys.exit(1)
    if os.environ.get("DEMO_EXIT") == "1":
        stop_all()
        return
    print("\nrunning; send more jobs to the jobs queue or press Ctrl-C to stop")
    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(0)))
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    stop_all()


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        stop_all()
        raise
