#!/usr/bin/env python3
"""Creates the pipeline's stateful resources on an AWS-compatible emulator from template.yaml
itself, and prints the environment that points the binaries at them.

The queue, dead-letter queue, table and topics are taken from the template as written (with
their keys, index, redrive policy and names) and deployed through the emulator's
CloudFormation, so that the emulator holds what AWS would. The tests create their resources the
same way, so a change to the template's table keys breaks a test, not production.

    python3 -m moto.server -H 127.0.0.1 -p 5000 &
    eval "$(python3 scripts/emulator.py http://127.0.0.1:5000)"
    cargo run --release &                         # the API on SQS and DynamoDB
    cargo run --release -p processor -- poll      # the processor, polling SQS

Options: --stack NAME (default ecommerce-pipeline), --param Key=Value (a template parameter,
repeatable), --json (print the resources as JSON instead of shell exports).
"""
import argparse
import json
import os
import sys

import boto3
import yaml

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "template.yaml")
# The resources that hold data; functions, APIs, alarms and roles have no emulator counterpart
# that the binaries use.
STATEFUL = ("AWS::SQS::Queue", "AWS::DynamoDB::Table", "AWS::SNS::Topic")
CREDENTIALS = dict(region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")


class CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !GetAtt, !Sub, ...) as their long forms."""


def _intrinsic(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_template(path=TEMPLATE):
    with open(path, encoding="utf-8") as file:
        return yaml.load(file, Loader=CloudFormationLoader)


def stateful_template(template):
    """The template cut down to its stateful resources, with all of its parameters."""
    resources = {name: resource for name, resource in template["Resources"].items()
                 if resource["Type"] in STATEFUL}
    return {"AWSTemplateFormatVersion": "2010-09-09", "Parameters": template.get("Parameters", {}),
            "Resources": resources}


def deploy(endpoint, stack, parameters):
    """Creates (or reuses) the stack; returns {logical id: (type, physical id)}."""
    cloudformation = boto3.client("cloudformation", endpoint_url=endpoint, **CREDENTIALS)
    body = json.dumps(stateful_template(load_template()))
    existing = [s["StackName"] for s in cloudformation.list_stacks(
        StackStatusFilter=["CREATE_COMPLETE"])["StackSummaries"]]
    if stack not in existing:
        cloudformation.create_stack(
            StackName=stack, TemplateBody=body,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()])
    resources = cloudformation.describe_stack_resources(StackName=stack)["StackResources"]
    return {r["LogicalResourceId"]: (r["ResourceType"], r["PhysicalResourceId"]) for r in resources}


def resolve(endpoint, deployed):
    """Queue URLs as the emulator serves them (CloudFormation reports AWS's host)."""
    sqs = boto3.client("sqs", endpoint_url=endpoint, **CREDENTIALS)
    resolved = {}
    for logical, (kind, physical) in deployed.items():
        if kind == "AWS::SQS::Queue":
            physical = sqs.get_queue_url(QueueName=physical.rstrip("/").rsplit("/", 1)[-1])["QueueUrl"]
        resolved[logical] = physical
    return resolved


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("endpoint", nargs="?", default="http://127.0.0.1:5000")
    parser.add_argument("--stack", default="ecommerce-pipeline")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    parameters = dict(pair.split("=", 1) for pair in args.param)
    resources = resolve(args.endpoint, deploy(args.endpoint, args.stack, parameters))
    if args.json:
        json.dump(resources, sys.stdout)
        return
    exports = {
        "AWS_ENDPOINT_URL": args.endpoint, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "BACKEND": "aws", "QUEUE_URL": resources["TransactionsQueue"],
        "DEAD_LETTER_QUEUE_URL": resources["DeadLetterQueue"],
        "TABLE_NAME": resources["TransactionsTable"], "TOPIC_ARN": resources["NotificationsTopic"],
    }
    for name, value in exports.items():
        print(f"export {name}='{value}'")


if __name__ == "__main__":
    main()
