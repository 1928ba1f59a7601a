"""Creates, in a running moto server, an IAM user whose only policy is the SQS part of the task
role in deploy/cloudformation/worker.yaml (read from the template itself, not a copy), with the
test's queue ARNs in place of the template's references, plus an admin user for the test's own
calls; then switches moto's IAM enforcement on for every later request.

Prints one JSON object on stdout:
  {"task": {"key": ..., "secret": ...}, "admin": {"key": ..., "secret": ...},
   "policy": <the policy document as put on the task user>}

What moto can and cannot evaluate (tests/common/mod.rs repeats this):
- Evaluated: the SigV4 signature (with the user's secret), the Action (`sqs:<Operation>`) and
  the Resource (the queue ARN moto derives from the request's QueueUrl) of identity policies;
  an explicit Deny wins.
- Translated here, because moto's action names differ from IAM's: IAM authorizes
  SendMessageBatch, DeleteMessageBatch and ChangeMessageVisibilityBatch with the non-batch
  action; moto checks `sqs:SendMessageBatch` etc. So each statement that allows a non-batch
  action also gets its batch name. Nothing else is added.
- Not evaluated: Conditions of identity policies (the task role's SQS statements have none),
  resource-based policies (the queues' DenyInsecureTransport policy: the tests speak plain
  HTTP to moto), KMS key policies and `kms:ViaService` (TaskRoleQueueKmsPolicy), the role's
  trust policy and session credentials (the principal is a user with an access key, not an
  assumed role), and `sqs:GetQueueUrl` (moto resolves no resource for it; the worker never
  calls it). The Connect statements are not exercised: connect-sim does not evaluate IAM.

Usage: task_principal.py ENDPOINT JOBS_ARN RESULTS_ARN DLQ_ARN [EVENTS_ARN] [--drop ACTION@LOGICAL_ID ...]
  EVENTS_ARN: the contact-events queue; given, the template's UseContactEvents condition holds
  (its `!If` statements take their first branch), else it does not.
  --drop sqs:SendMessage@JobsQueue removes that action on that queue from the policy (a test of
  what happens without it).
"""

import json
import sys
import urllib.request
from pathlib import Path

import boto3
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "cloudformation" / "worker.yaml"
BATCH = {
    "sqs:SendMessage": "sqs:SendMessageBatch",
    "sqs:DeleteMessage": "sqs:DeleteMessageBatch",
    "sqs:ChangeMessageVisibility": "sqs:ChangeMessageVisibilityBatch",
}


class Tagged:
    """A CloudFormation short-form intrinsic (!Ref, !GetAtt, !Sub, ...), kept for substitution."""

    def __init__(self, tag, value):
        self.tag, self.value = tag, value

    def __repr__(self):
        return f"{self.tag} {self.value!r}"


class CfnLoader(yaml.SafeLoader):
    pass


def _any_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return Tagged("!" + suffix, value)


CfnLoader.add_multi_constructor("!", _any_tag)


NO_VALUE = object()  # `!Ref AWS::NoValue`: the element is left out


def resolve(value, arns, where, conditions=frozenset()):
    """Replaces `!GetAtt Queue.Arn` (short or long form) by the test's ARN and `!If [Cond, a, b]`
    by `a` when Cond is in `conditions`, else `b`; anything else unresolvable is an error, so a
    template change cannot silently widen or narrow the test."""
    if isinstance(value, Tagged) and value.tag == "!If":
        cond, yes, no = value.value
        return resolve(yes if cond in conditions else no, arns, where, conditions)
    if isinstance(value, Tagged) and value.tag == "!Ref" and value.value == "AWS::NoValue":
        return NO_VALUE
    if isinstance(value, Tagged):
        if value.tag == "!GetAtt":
            target = value.value if isinstance(value.value, str) else ".".join(value.value)
            logical, _, attribute = target.partition(".")
            if attribute == "Arn" and logical in arns:
                return arns[logical]
        sys.exit(f"task_principal.py: cannot resolve {value!r} in {where}")
    if isinstance(value, dict) and list(value) == ["Fn::GetAtt"]:
        return resolve(Tagged("!GetAtt", value["Fn::GetAtt"]), arns, where, conditions)
    if isinstance(value, list):
        out = [resolve(v, arns, where, conditions) for v in value]
        return [v for v in out if v is not NO_VALUE]
    if isinstance(value, dict):
        return {k: resolve(v, arns, where, conditions) for k, v in value.items()}
    return value


def task_sqs_policy(arns, drops, conditions=frozenset()):
    template = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=CfnLoader)
    role = template["Resources"]["TaskRole"]["Properties"]
    docs = [p["PolicyDocument"] for p in role["Policies"] if p["PolicyName"] == "sqs"]
    if len(docs) != 1:
        sys.exit("task_principal.py: TaskRole has no single policy named sqs")
    doc = resolve(docs[0], arns, "TaskRole policy sqs", conditions)
    by_arn = {v: k for k, v in arns.items()}
    statements = []
    for st in doc["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for n, resource in enumerate(resources):
            kept = [a for a in actions if f"{a}@{by_arn.get(resource)}" not in drops]
            kept += [BATCH[a] for a in kept if a in BATCH]
            if kept:
                split = {**st, "Action": kept, "Resource": resource}
                if len(resources) > 1 and "Sid" in st:
                    split["Sid"] = f"{st['Sid']}{n}"  # Sids must stay unique
                statements.append(split)
    return {"Version": doc.get("Version", "2012-10-17"), "Statement": statements}


def main():
    args = sys.argv[1:]
    drops = set()
    while "--drop" in args:
        i = args.index("--drop")
        drops.add(args[i + 1])
        del args[i : i + 2]
    endpoint, jobs, results, dlq, *events = args
    arns = {"JobsQueue": jobs, "ResultsQueue": results, "DeadLetterQueue": dlq}
    conditions = set()
    if events:
        arns["ContactEventsQueue"] = events[0]
        conditions.add("UseContactEvents")
    policy = task_sqs_policy(arns, drops, frozenset(conditions))
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    out = {"policy": policy}
    for user, doc in [
        ("resume-chat-worker-task", policy),
        ("test-admin", {"Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
    ]:
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(doc))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        out["task" if user.endswith("task") else "admin"] = {
            "key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    # From now on every request is authenticated and authorized.
    req = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                 headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(req).read()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
