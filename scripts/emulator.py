#!/usr/bin/env python3
"""Creates the pipeline's resources (as template.yaml names them) on an AWS-compatible emulator
and prints the environment that points the binaries at them.

    python3 -m moto.server -H 127.0.0.1 -p 5000 &
    eval "$(python3 scripts/emulator.py http://127.0.0.1:5000)"
    cargo run --release &                         # the API with BACKEND=aws
    cargo run --release -p processor -- poll      # the processor, polling SQS
"""
import json
import sys

import boto3

ENDPOINT = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5000"
SETTINGS = dict(endpoint_url=ENDPOINT, region_name="us-east-1",
                aws_access_key_id="testing", aws_secret_access_key="testing")
QUEUE, TABLE, TOPIC = "ECommerceTransactionsQueue", "ECommerceTransactions", "ECommerceNotificationsTopic"


def main():
    sqs = boto3.client("sqs", **SETTINGS)
    dlq_url = sqs.create_queue(QueueName=f"{QUEUE}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    queue_url = sqs.create_queue(QueueName=QUEUE, Attributes={"RedrivePolicy": redrive,
                                                              "VisibilityTimeout": "180"})["QueueUrl"]
    dynamodb = boto3.client("dynamodb", **SETTINGS)
    if TABLE not in dynamodb.list_tables()["TableNames"]:
        dynamodb.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for name in ("pk", "gsi1pk", "gsi1sk")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[{
                "IndexName": "by_shop_time",
                "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"},
                              {"AttributeName": "gsi1sk", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"}}])
    topic_arn = boto3.client("sns", **SETTINGS).create_topic(Name=TOPIC)["TopicArn"]
    exports = {
        "AWS_ENDPOINT_URL": ENDPOINT, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "BACKEND": "aws", "QUEUE_URL": queue_url, "DEAD_LETTER_QUEUE_URL": dlq_url,
        "TABLE_NAME": TABLE, "TOPIC_ARN": topic_arn,
    }
    for name, value in exports.items():
        print(f"export {name}='{value}'")


if __name__ == "__main__":
    main()
