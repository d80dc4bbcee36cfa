"""LocalStack ready.d hook: create or converge the SNS/SQS topology.

Reads the one declaration, topology/topology.json (mounted at
/etc/localstack/init/topology.json), and applies it exactly as topology.Apply
(topology/apply.go, `orderctl provision`) does. Safe to run again and again.

Environment: TOPOLOGY_FILE, AWS_ENDPOINT_URL (default http://localhost:4566),
AWS_DEFAULT_REGION or AWS_REGION (default us-east-1), ORDERPIPE_NAME_PREFIX.
"""

import json
import os

import boto3


def say(*words):
    print(*words, flush=True)


def go_json(value):
    """JSON as Go's json.Marshal writes it: compact, map keys sorted."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def load(path, prefix):
    """The declaration, validated like Topology.Validate, with WithPrefix applied."""
    with open(path) as f:
        t = json.load(f)
    if not t.get("topic") or not t.get("dlq_suffix"):
        raise ValueError("topology: topic and dlq_suffix are required")
    handlers = set()
    for q in t["queues"]:
        if not q.get("name") or not q.get("handler") or not q.get("event_types"):
            raise ValueError(f"topology: queue {q.get('name')!r} needs name, handler and event_types")
        if q["handler"] in handlers:
            raise ValueError(f"topology: handler {q['handler']!r} has two queues")
        handlers.add(q["handler"])
        if q.get("max_receive_count", 0) < 1 or q.get("visibility_timeout_seconds", 0) < 1:
            raise ValueError(f"topology: queue {q['name']!r} needs max_receive_count and visibility_timeout_seconds >= 1")
    t["topic"] = prefix + t["topic"]
    for q in t["queues"]:
        q["name"] = prefix + q["name"]
    return t


def ensure_queue(sqs, name, attrs):
    """Create the queue if needed, then set its attributes (so an existing queue converges)."""
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attrs)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def apply_queue(sqs, t, q, topic_arn):
    dlq_name = q["name"] + t["dlq_suffix"]
    _, dlq_arn = ensure_queue(sqs, dlq_name, {"MessageRetentionPeriod": str(t["dlq_message_retention_seconds"])})
    say(f"dlq          {dlq_name} {dlq_arn}")
    redrive = go_json({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(q["max_receive_count"])})
    url, arn = ensure_queue(sqs, q["name"], {
        "VisibilityTimeout": str(q["visibility_timeout_seconds"]),
        "MessageRetentionPeriod": str(t["message_retention_seconds"]),
        "ReceiveMessageWaitTimeSeconds": str(t["receive_wait_seconds"]),
        "RedrivePolicy": redrive,
    })
    # In AWS, SNS may deliver to the queue only when the queue's policy allows it.
    policy = go_json({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AllowTopic",
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
        }],
    })
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": policy})
    say(f"queue        {q['name']} {arn}")
    return arn


def find_subscription(sns, topic_arn, endpoint):
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn):
        for s in page["Subscriptions"]:
            if s.get("Protocol") == "sqs" and s.get("Endpoint") == endpoint:
                return s["SubscriptionArn"]
    return None


def subscribe(sns, topic_arn, q, queue_arn):
    """Subscribe with raw delivery and the queue's filter policy, or converge an existing subscription."""
    want = {
        "RawMessageDelivery": "true",
        "FilterPolicyScope": "MessageAttributes",
        "FilterPolicy": go_json({"event_type": q["event_types"]}),
    }
    sub_arn = find_subscription(sns, topic_arn, queue_arn)
    if sub_arn is None:
        sub_arn = sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn,
                                Attributes=want, ReturnSubscriptionArn=True)["SubscriptionArn"]
        say(f"subscription {q['name']} created {sub_arn}")
        return
    for name in ("RawMessageDelivery", "FilterPolicyScope", "FilterPolicy"):
        sns.set_subscription_attributes(SubscriptionArn=sub_arn, AttributeName=name, AttributeValue=want[name])
    say(f"subscription {q['name']} updated {sub_arn}")


def main():
    path = os.environ.get("TOPOLOGY_FILE") or "/etc/localstack/init/topology.json"
    t = load(path, os.environ.get("ORDERPIPE_NAME_PREFIX", ""))
    session = boto3.session.Session(
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1",
    )
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or "http://localhost:4566"
    sns = session.client("sns", endpoint_url=endpoint)
    sqs = session.client("sqs", endpoint_url=endpoint)

    topic_arn = sns.create_topic(Name=t["topic"])["TopicArn"]
    say(f"topic        {t['topic']} {topic_arn}")
    for q in t["queues"]:
        queue_arn = apply_queue(sqs, t, q, topic_arn)
        subscribe(sns, topic_arn, q, queue_arn)
    say(f"topology applied from {path}")


# LocalStack exec()s this file with empty globals (no __name__), and marks the
# hook failed when it raises: so no __main__ guard and no sys.exit.
main()
