#!/usr/bin/env python3
"""Checks template.yaml's IAM permissions against the AWS calls the code makes.

    iam_check.py TEMPLATE CALLS_JSON     exit 0 when every call is allowed and nothing is too broad
    iam_check.py --self-test             the checker's own tests
    iam_check.py --rules TEMPLATE K=V…   exit 1 when the template's Rules refuse these parameters

The template is rendered as CloudFormation sees it (the SAM transform, from aws-sam-translator,
which comes with cfn-lint), its intrinsic functions are resolved with the parameters' defaults in
a made-up account, and each function's role is collected: its inline policies and the managed
policies attached to it, SAM's included. Then, for every call of CALLS_JSON made by a function,
the role must allow the action on the resource's ARN, with IAM's matching rules (case-blind
actions, `*` and `?` wildcards, conditions against the call's context, explicit denies win).
It also fails on a data-plane action (sqs, dynamodb, sns, ssm, kms) allowed on "*" without a
condition.

CALLS_JSON is a list of {"function", "operation", "action", "resource", "context"}, where
resource names a template resource: queue:Logical, table:Logical, index:Logical/IndexName,
topic:Logical, parameter:ParameterName, log-group:Logical, kms-key:any.
"""
import copy
import json
import logging
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emulator import load_template  # noqa: E402  (same YAML reading as the emulator's)

REGION, ACCOUNT, PARTITION, STACK = "us-east-1", "123456789012", "aws", "pipeline"
DATA_PLANE = ("sqs", "dynamodb", "sns", "ssm", "kms")

# The AWS managed policies SAM attaches to the roles it generates, as AWS documents them, so
# that a function left to SAM's defaults is judged by what it really gets.
MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": [
        {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": "*"}],
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole": [
        {"Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                       "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": "*"}],
}


def render(template):
    """The template after the SAM transform, as CloudFormation deploys it."""
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator
    # The translator's own usage metrics are not ours to publish.
    logging.getLogger("samtranslator").setLevel(logging.CRITICAL)
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    template = copy.deepcopy(template)
    # The code's location is a build detail (SAM uploads it); the transform wants an S3 URI.
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource.setdefault("Properties", {})["CodeUri"] = "s3://bucket/code.zip"
    translator = Translator(managed_policy_map={}, sam_parser=Parser())
    return translator.translate(sam_template=template, parameter_values={"AWS::Region": REGION})


def function_environments(template, overrides):
    """Each function's environment after the transform (Globals merged in), resolved as
    CloudFormation would with these parameter values; and each parameter's default."""
    rendered = render(template)
    resolver = Resolver(rendered, overrides)
    environments = {name: resolver.resolve(resource["Properties"].get("Environment", {}).get("Variables", {}))
                    for name, resource in rendered["Resources"].items()
                    if resource["Type"] == "AWS::Lambda::Function"}
    defaults = {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}
    return {"environments": environments, "defaults": defaults}


class Resolver:
    """Resolves intrinsic functions as CloudFormation would in one made-up account."""

    def __init__(self, template, overrides=None):
        self.resources = template.get("Resources", {})
        self.parameters = {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}
        self.parameters.update(overrides or {})
        self.conditions = template.get("Conditions", {})
        self.pseudo = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": PARTITION,
                       "AWS::StackName": STACK, "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": None}

    def name_of(self, logical):
        resource = self.resources[logical]
        props = resource.get("Properties", {})
        key = {"AWS::SQS::Queue": "QueueName", "AWS::DynamoDB::Table": "TableName", "AWS::SNS::Topic": "TopicName",
               "AWS::Logs::LogGroup": "LogGroupName", "AWS::IAM::Role": "RoleName",
               "AWS::Lambda::Function": "FunctionName"}.get(resource["Type"])
        if key and key in props:
            return self.resolve(props[key])
        return f"{STACK}-{logical}-GENERATED"

    def arn_of(self, logical):
        kind, name = self.resources[logical]["Type"], self.name_of(logical)
        return {
            "AWS::SQS::Queue": f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{name}",
            "AWS::DynamoDB::Table": f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
            "AWS::SNS::Topic": f"arn:{PARTITION}:sns:{REGION}:{ACCOUNT}:{name}",
            "AWS::Logs::LogGroup": f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
            "AWS::IAM::Role": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}",
            "AWS::Lambda::Function": f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{name}",
        }.get(kind, f"arn:{PARTITION}:unknown:{REGION}:{ACCOUNT}:{logical}")

    def ref(self, name):
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        kind = self.resources[name]["Type"]
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{self.name_of(name)}"
        if kind == "AWS::SNS::Topic":
            return self.arn_of(name)
        if kind in ("AWS::DynamoDB::Table", "AWS::Logs::LogGroup", "AWS::IAM::Role", "AWS::Lambda::Function"):
            return self.name_of(name)
        return name

    def get_att(self, logical, attribute):
        if attribute in ("Arn", "TopicArn"):
            return self.arn_of(logical)
        if attribute == "StreamArn":
            return f"{self.arn_of(logical)}/stream/{STREAM_LABEL}"
        if attribute in ("QueueName", "TopicName"):
            return self.name_of(logical)
        if attribute == "QueueUrl":
            return self.ref(logical)
        return f"{logical}.{attribute}"

    def condition(self, name):
        return bool(self.resolve(self.conditions[name]))

    def sub(self, text, variables):
        def replace(match):
            token = match.group(1)
            if token.startswith("!"):
                return "${" + token[1:] + "}"
            if token in variables:
                return str(variables[token])
            if "." in token and token.split(".", 1)[0] in self.resources:
                return str(self.get_att(*token.split(".", 1)))
            return str(self.ref(token))
        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def resolve(self, value):
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                logical, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.get_att(logical, attribute)
            if key == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument
                return self.sub(text, {k: self.resolve(v) for k, v in variables.items()})
            if key == "Fn::Join":
                return argument[0].join(str(self.resolve(part)) for part in self.resolve(argument[1]))
            if key == "Fn::If":
                return self.resolve(argument[1] if self.condition(argument[0]) else argument[2])
            if key == "Fn::Equals":
                return str(self.resolve(argument[0])) == str(self.resolve(argument[1]))
            if key == "Fn::Not":
                return not self.resolve(argument[0])
            if key == "Fn::And":
                return all(self.resolve(item) for item in argument)
            if key == "Fn::Or":
                return any(self.resolve(item) for item in argument)
            if key == "Condition":
                return self.condition(argument)
            if key == "Fn::Contains":
                return str(self.resolve(argument[1])) in [str(item) for item in self.resolve(argument[0])]
        return {k: self.resolve(v) for k, v in value.items()}


# A table stream's ARN ends in the time the stream was enabled; any one stands for it here.
STREAM_LABEL = "2026-01-01T00:00:00.000"


def as_list(value):
    return value if isinstance(value, list) else [value]


def role_statements(template, resolver, function):
    """Every statement of the function's role: inline policies and attached managed policies."""
    props = template["Resources"][function]["Properties"]
    role_arn = resolver.resolve(props["Role"])
    roles = [name for name, resource in template["Resources"].items()
             if resource["Type"] == "AWS::IAM::Role" and resolver.arn_of(name) == role_arn]
    if not roles:
        raise SystemExit(f"{function}: its role {role_arn} is not in the template")
    role = resolver.resolve(template["Resources"][roles[0]].get("Properties", {}))
    statements, problems = [], []
    for policy in role.get("Policies", []):
        statements += as_list(policy["PolicyDocument"]["Statement"])
    for arn in role.get("ManagedPolicyArns", []):
        if arn in MANAGED_POLICIES:
            statements += MANAGED_POLICIES[arn]
        else:
            problems.append(f"{function}: managed policy {arn} cannot be checked; grant what it needs inline")
    return statements, problems


def matches(pattern, value, case_blind=False):
    if case_blind:
        pattern, value = pattern.lower(), value.lower()
    # IAM's wildcards are * and ?; nothing else is special.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def condition_holds(conditions, context):
    for operator, pairs in conditions.items():
        for key, expected in pairs.items():
            actual = context.get(key)
            expected = as_list(expected)
            if operator == "ForAllValues:StringEquals":
                # Every value the request carries must be allowed; as in IAM, a request that
                # carries none passes.
                ok = all(value in expected for value in as_list(actual or []))
            elif actual is None:
                return False
            elif isinstance(actual, list):
                return False  # a multivalued key needs a set operator
            elif operator in ("StringEquals", "ArnEquals"):
                ok = actual in expected
            elif operator in ("StringLike", "ArnLike"):
                ok = any(matches(pattern, actual) for pattern in expected)
            else:
                return False  # an operator this checker does not know never counts as allowing
            if not ok:
                return False
    return True


def statement_applies(statement, action, arn, context):
    if "NotAction" in statement or "NotResource" in statement:
        return False
    if not any(matches(pattern, action, case_blind=True) for pattern in as_list(statement.get("Action", []))):
        return False
    if not any(matches(pattern, arn) for pattern in as_list(statement.get("Resource", []))):
        return False
    return condition_holds(statement.get("Condition", {}), context)


def allowed(statements, action, arn, context):
    if any(s["Effect"] == "Deny" and statement_applies(s, action, arn, context) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and statement_applies(s, action, arn, context) for s in statements)


def too_broad(function, statements):
    problems = []
    for statement in statements:
        if statement["Effect"] != "Allow" or statement.get("Condition"):
            continue
        if "*" not in as_list(statement.get("Resource", [])):
            continue
        for action in as_list(statement.get("Action", [])):
            service = action.split(":", 1)[0].lower()
            if action == "*" or service in DATA_PLANE:
                problems.append(f"{function}: {action} is allowed on every resource (*) without a condition")
    return problems


def resource_arn(resolver, reference):
    kind, _, target = reference.partition(":")
    if kind in ("queue", "table", "topic", "log-group"):
        return resolver.arn_of(target) if target in resolver.resources else None
    if kind == "index":
        table, index = target.split("/", 1)
        if table not in resolver.resources:
            return None
        return f"{resolver.arn_of(table)}/index/{index}"
    if kind == "stream":
        return f"{resolver.arn_of(target)}/stream/{STREAM_LABEL}" if target in resolver.resources else None
    if kind == "parameter":
        if target not in resolver.parameters:
            return None  # the template lacks the parameter the code reads: reported by check()
        name = resolver.parameters[target]
        separator = "" if name.startswith("/") else "/"
        return f"arn:{PARTITION}:ssm:{REGION}:{ACCOUNT}:parameter{separator}{name}"
    if kind == "kms-key":
        return f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/aws-managed"
    raise SystemExit(f"unknown resource reference {reference!r}")


def check(template, calls):
    rendered = render(template)
    resolver = Resolver(rendered)
    problems, checked = [], 0
    by_function = {}
    for call in calls:
        by_function.setdefault(call["function"], []).append(call)
    for function, function_calls in sorted(by_function.items()):
        if function not in rendered["Resources"]:
            problems.append(f"{function}: not in the template")
            continue
        statements, role_problems = role_statements(rendered, resolver, function)
        problems += role_problems + too_broad(function, statements)
        for call in function_calls:
            arn = resource_arn(resolver, call["resource"])
            if arn is None:
                problems.append(f"{function}: the template has no resource or parameter for "
                                f"{call['resource']} (the code calls {call['operation']})")
                continue
            context = {key: value.replace("{region}", REGION) if isinstance(value, str) else value
                       for key, value in call.get("context", {}).items()}
            checked += 1
            if not allowed(statements, call["action"], arn, context):
                problems.append(f"{function}: {call['action']} on {arn} is not allowed "
                                f"(the code calls {call['operation'] or 'it implicitly'})")
    return problems, checked


def self_test():
    def template(statement):
        return {"Resources": {
            "Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "q"}},
            "Role": {"Type": "AWS::IAM::Role", "Properties": {"Policies": [
                {"PolicyName": "p", "PolicyDocument": {"Statement": [statement]}}]}},
            "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Role": {"Fn::GetAtt": ["Role", "Arn"]}}}},
            "Parameters": {"Key": {"Type": "String", "Default": "/app/keys"}}}
    send = [{"function": "Fn", "operation": "send_message", "action": "sqs:SendMessage", "resource": "queue:Q"}]
    ok, _ = check(template({"Effect": "Allow", "Action": "sqs:send*", "Resource": {"Fn::GetAtt": ["Q", "Arn"]}}), send)
    assert ok == [], ok
    wrong, _ = check(template({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:*:*:other"}), send)
    assert len(wrong) == 1 and "not allowed" in wrong[0], wrong
    broad, _ = check(template({"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}), send)
    assert any("every resource" in p for p in broad), broad
    get = [{"function": "Fn", "operation": "get_parameter", "action": "ssm:GetParameter", "resource": "parameter:Key"}]
    doubled = {"Effect": "Allow", "Action": "ssm:GetParameter",
               "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/${Key}"}}
    slash, _ = check(template(doubled), get)
    assert len(slash) == 1, "a parameter ARN with two slashes must be refused"
    single = dict(doubled, Resource={"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${Key}"})
    assert check(template(single), get)[0] == []
    via = [{"function": "Fn", "operation": "", "action": "kms:Decrypt", "resource": "kms-key:any",
            "context": {"kms:ViaService": "ssm.{region}.amazonaws.com"}}]
    conditioned = {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
                   "Condition": {"StringEquals": {"kms:ViaService": "ssm.us-east-1.amazonaws.com"}}}
    assert check(template(conditioned), via)[0] == []
    other = dict(conditioned, Condition={"StringEquals": {"kms:ViaService": "sns.us-east-1.amazonaws.com"}})
    assert len(check(template(other), via)[0]) == 1
    # A grant scoped to some attributes allows a write of those only.
    scoped = {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": {"Fn::GetAtt": ["Q", "Arn"]},
              "Condition": {"ForAllValues:StringEquals": {"dynamodb:Attributes": ["pk", "review"]}}}
    writes = lambda *names: [dict(send[0], context={"dynamodb:Attributes": list(names)})]
    assert check(template(scoped), writes("pk", "review"))[0] == []
    assert len(check(template(scoped), writes("pk", "record"))[0]) == 1, "an attribute outside the grant"
    assert check(template(scoped), send)[0] == [], "as in IAM, ForAllValues holds for none"
    print("iam_check self-test: ok")


def broken_rules(template, overrides):
    """The template's Rules whose assertions fail with these parameter values, as
    CloudFormation checks them before creating anything."""
    resolver = Resolver(template, overrides)
    broken = []
    for name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not resolver.resolve(rule["RuleCondition"]):
            continue
        for assertion in rule.get("Assertions", []):
            if not resolver.resolve(assertion["Assert"]):
                broken.append(f"{name}: {assertion.get('AssertDescription', 'assertion failed')}")
    return broken


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return
    if len(sys.argv) >= 3 and sys.argv[1] == "--rules":
        overrides = dict(pair.split("=", 1) for pair in sys.argv[3:])
        broken = broken_rules(load_template(sys.argv[2]), overrides)
        for problem in broken:
            print(f"REFUSED {problem}")
        sys.exit(1 if broken else 0)
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    template = load_template(sys.argv[1])
    with open(sys.argv[2], encoding="utf-8") as file:
        calls = json.load(file)
    problems, checked = check(template, calls)
    for problem in problems:
        print(f"FAIL {problem}")
    print(f"{checked} calls checked against {sys.argv[1]}: {len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
