"""template.yaml: cfn-lint clean, the SAM transform expands offline, least-privilege IAM."""
from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.deploy_fixtures import TEMPLATE, sam_template

ROOT = Path(__file__).resolve().parents[2]
CFN_LINT = ROOT / ".venv" / "bin" / "cfn-lint"
_spec = importlib.util.spec_from_file_location("layers_build", ROOT / "layers" / "build.py")
layer_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(layer_build)

MANAGED_ALLOWED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",  # CloudWatch Logs
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",  # Tracing: Active / Tracing.Enabled
}


class OfflinePolicies:
    """samtranslator's managed-policy loader without IAM: the two AWS policies SAM attaches."""

    def load(self) -> dict[str, str]:
        return {arn.rsplit("/", 1)[-1]: arn for arn in MANAGED_ALLOWED}


def packaged(tpl: dict) -> dict:
    """What `sam package` hands CloudFormation: local paths replaced by S3 URIs."""
    tpl = copy.deepcopy(tpl)
    tpl["Globals"]["Function"]["CodeUri"] = "s3://artifacts/src"
    for res in tpl["Resources"].values():
        props = res.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = "s3://artifacts/" + props[key].strip("/")
        if "DefinitionUri" in props:
            props["Definition"] = json.loads((ROOT / props.pop("DefinitionUri")).read_text())
    return tpl


@pytest.fixture(scope="module")
def transformed(tmp_path_factory) -> dict:
    import os

    from samtranslator.translator.transform import transform

    old = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = "us-west-2"  # samtranslator reads the region from boto3
    try:
        return transform(packaged(sam_template()), {}, OfflinePolicies())
    finally:
        if old is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = old


def run_cfn_lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CFN_LINT), "--format", "parseable", str(path)], capture_output=True, text=True)


def test_cfn_lint_is_clean():
    out = run_cfn_lint(TEMPLATE)
    assert out.returncode == 0, out.stdout + out.stderr


def test_cfn_lint_catches_a_broken_template(tmp_path):
    bad = tmp_path / "template.yaml"
    bad.write_text(TEMPLATE.read_text().replace("Runtime: python3.12", "Runtime: python2.7")
                   .replace("Timeout: 900", "Timeout: 9000"))
    out = run_cfn_lint(bad)
    assert out.returncode != 0 and "python2.7" in out.stdout and "9000" in out.stdout


def test_sam_transform_expands_every_resource(transformed):
    types = {}
    for name, res in transformed["Resources"].items():
        types.setdefault(res["Type"], []).append(name)
    assert sorted(types["AWS::Lambda::Function"]) == sorted(layer_build.FUNCTIONS)
    assert len(types["AWS::Lambda::LayerVersion"]) == len(layer_build.LAYERS)
    assert types["AWS::StepFunctions::StateMachine"] == ["ColocationStateMachine"]
    assert types["AWS::ApiGateway::RestApi"] == ["ColocationApi"]
    assert "AWS::SecretsManager::Secret" in types and "AWS::S3::Bucket" in types
    # the state machine's definition got every substitution
    sm = transformed["Resources"]["ColocationStateMachine"]["Properties"]
    assert set(sm["DefinitionSubstitutions"]) == {
        "PlanFunctionArn", "ColocateFunctionArn", "SummarizeFunctionArn", "OutputBucket", "OutputPrefix"}


def test_functions_runtime_sizes_and_layers(transformed):
    tpl = sam_template()
    glob = tpl["Globals"]["Function"]
    assert glob["Runtime"] == "python3.12" and glob["Architectures"] == ["arm64"]
    env = glob["Environment"]["Variables"]
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"} <= set(env)
    res = tpl["Resources"]
    col = res["ColocateFunction"]["Properties"]
    assert col["Timeout"] == 900 and col["EphemeralStorage"]["Size"] >= 2048 and col["MemorySize"] >= 1024
    assert res["ApiFunction"]["Properties"]["Timeout"] <= 29
    layer_of = {name: res[name]["Properties"]["ContentUri"].strip("/").rsplit("/", 1)[-1]
                for name in ("BaseLayer", "ScienceLayer", "PlotLayer", "ParquetLayer")}
    for fn, expected in layer_build.FUNCTIONS.items():
        refs = [layer["Ref"] for layer in res[fn]["Properties"]["Layers"]]
        assert tuple(layer_of[r] for r in refs) == expected, fn  # what the size check measured
    handlers = {fn: res[fn]["Properties"]["Handler"] for fn in layer_build.FUNCTIONS}
    for fn, handler in handlers.items():
        module, func = handler.rsplit(".", 1)
        assert (ROOT / "src" / (module.replace(".", "/") + ".py")).is_file(), handler


def test_bucket_is_private_encrypted_and_expires():
    b = sam_template()["Resources"]["OutputBucket"]["Properties"]
    assert all(b["PublicAccessBlockConfiguration"].values()) and len(b["PublicAccessBlockConfiguration"]) == 4
    assert b["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    rule = b["LifecycleConfiguration"]["Rules"][0]
    assert rule["Status"] == "Enabled" and "ExpirationInDays" in rule


def test_api_model_matches_the_request_model():
    from core.request import ColocationRequest

    api = sam_template()["Resources"]["ColocationApi"]["Properties"]
    model = api["Models"]["ColocationRequest"]
    assert set(model["properties"]) == set(ColocationRequest.model_fields)
    assert model["additionalProperties"] is False and model["required"] == ["bbox"]
    events = sam_template()["Resources"]["ApiFunction"]["Properties"]["Events"]
    assert events["StartJob"]["Properties"]["RequestModel"]["ValidateBody"] is True


def test_outputs_and_samconfig_region():
    outputs = sam_template()["Outputs"]
    assert {"ApiUrl", "OutputBucketName", "StateMachineArn"} <= set(outputs)
    cfg = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert cfg["default"]["deploy"]["parameters"]["region"] == "us-west-2"


# ---------------------------------------------------------------- least privilege
def _is_ref_to(value, logical_ids: set[str]) -> bool:
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"] in logical_ids
        if "Fn::GetAtt" in value:
            att = value["Fn::GetAtt"]
            att = att.split(".") if isinstance(att, str) else att
            return att[0] in logical_ids and att[1] == "Arn"
        if "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            return any(f"${{{lid}.Arn}}/" in text for lid in logical_ids) or (
                "${AWS::StackName}-colocation" in text and "ColocationStateMachine" in logical_ids)
    return False


# action prefix → the resources it may touch
ALLOWED_RESOURCES = {
    "s3": {"OutputBucket"},
    "secretsmanager": {"EdlTokenSecret", "JobIdKeySecret"},
    "states": {"ColocationStateMachine"},
    "lambda": {"PlanFunction", "ColocateFunction", "SummarizeFunction"},
}


# The one statement allowed on "*": CloudWatch Logs' vended-log delivery (state machine logging)
# has no resource-level permissions. Exactly these actions, only in the state machine's role.
LOG_DELIVERY_ROLE = "ColocationStateMachineRole"
LOG_DELIVERY_ACTIONS = {
    "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
}


def _is_log_delivery_exception(role: str, actions: list[str], resources: list) -> bool:
    return role == LOG_DELIVERY_ROLE and set(actions) == LOG_DELIVERY_ACTIONS and len(actions) == len(
        LOG_DELIVERY_ACTIONS) and resources == ["*"]


def privilege_problems(template: dict) -> list[str]:
    problems = []
    for name, res in template["Resources"].items():
        if res["Type"] != "AWS::IAM::Role":
            continue
        props = res["Properties"]
        for arn in props.get("ManagedPolicyArns", []):
            if arn not in MANAGED_ALLOWED:
                problems.append(f"{name}: managed policy {arn}")
        for policy in props.get("Policies", []):
            for st in policy["PolicyDocument"]["Statement"]:
                if st.get("Effect") != "Allow":
                    continue
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                resources = st.get("Resource", [])
                resources = resources if isinstance(resources, list) else [resources]
                if _is_log_delivery_exception(name, actions, resources):
                    continue
                for action in actions:
                    service, _, verb = action.partition(":")
                    if "*" in action:
                        problems.append(f"{name}: wildcard action {action}")
                    allowed = ALLOWED_RESOURCES.get(service)
                    if allowed is None:
                        problems.append(f"{name}: action outside the service's needs: {action}")
                        continue
                    for r in resources:
                        if r == "*" or not _is_ref_to(r, allowed):
                            problems.append(f"{name}: {action} on {json.dumps(r)}")
    return problems


def test_least_privilege(transformed):
    assert privilege_problems(transformed) == []
    # the "*" exception is there, once, in the state machine's role only
    found = [(name, st) for name, res in transformed["Resources"].items() if res["Type"] == "AWS::IAM::Role"
             for policy in res["Properties"].get("Policies", []) for st in policy["PolicyDocument"]["Statement"]
             if st.get("Resource") == "*"]
    assert [(name, set(st["Action"])) for name, st in found] == [(LOG_DELIVERY_ROLE, LOG_DELIVERY_ACTIONS)]
    roles = [n for n, r in transformed["Resources"].items() if r["Type"] == "AWS::IAM::Role"]
    assert len(roles) == 5  # four functions + the state machine
    # the API can start and read jobs but cannot read the EDL secret (only the job-id key)
    api_policy = json.dumps(transformed["Resources"]["ApiFunctionRole"]["Properties"]["Policies"])
    assert "EdlTokenSecret" not in api_policy and "JobIdKeySecret" in api_policy
    assert "states:StartExecution" in api_policy


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "Action": "s3:*", "Resource": {"Fn::Sub": "${OutputBucket.Arn}/*"}},
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::someone-elses-bucket/*"},
        {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": {"Fn::Sub": "${OutputBucket.Arn}/*"}},
        {"Effect": "Allow", "Action": ["iam:PassRole"], "Resource": {"Ref": "EdlTokenSecret"}},
    ],
)
def test_least_privilege_check_can_fail(transformed, statement):
    bad = copy.deepcopy(transformed)
    bad["Resources"]["PlanFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(statement)
    assert privilege_problems(bad)


def _logs_statement(template: dict) -> dict:
    statements = template["Resources"][LOG_DELIVERY_ROLE]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    return next(st for st in statements if st.get("Resource") == "*")


@pytest.mark.parametrize(
    "change",
    [
        lambda st: st["Action"].append("logs:PutLogEvents"),  # one action more on "*"
        lambda st: st["Action"].append("s3:GetObject"),
        lambda st: st.update(Action=["logs:*"]),
        lambda st: st["Action"].remove("logs:DescribeLogGroups") or st["Action"].append("logs:DeleteLogGroup"),
    ],
)
def test_the_log_delivery_exception_is_exactly_that(transformed, change):
    bad = copy.deepcopy(transformed)
    change(_logs_statement(bad))
    assert privilege_problems(bad)


def test_the_log_delivery_exception_is_only_for_the_state_machine(transformed):
    bad = copy.deepcopy(transformed)
    stolen = copy.deepcopy(_logs_statement(bad))
    bad["Resources"]["ApiFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(stolen)
    assert privilege_problems(bad) == [f"ApiFunctionRole: action outside the service's needs: {a}"
                                       for a in stolen["Action"]]


def test_state_machine_logs_to_a_log_group_with_retention(transformed):
    sm = transformed["Resources"]["ColocationStateMachine"]["Properties"]
    logging = sm["LoggingConfiguration"]
    assert logging["Level"] in ("ERROR", "ALL") and logging["IncludeExecutionData"] is True
    (dest,) = logging["Destinations"]
    assert dest["CloudWatchLogsLogGroup"]["LogGroupArn"] == {"Fn::GetAtt": ["StateMachineLogGroup", "Arn"]}
    group = sam_template()["Resources"]["StateMachineLogGroup"]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    param = sam_template()["Parameters"]["LogRetentionDays"]
    assert param["Default"] in param["AllowedValues"] and 1 <= param["Default"] <= 365
    assert group["LogGroupName"]["Fn::Sub"].startswith("/aws/vendedlogs/states/")


def test_failed_dates_alarm_watches_the_metric_summarize_emits():
    tpl = sam_template()
    alarm = tpl["Resources"]["FailedDatesAlarm"]["Properties"]
    env = tpl["Globals"]["Function"]["Environment"]["Variables"]
    assert alarm["Namespace"] == env["POWERTOOLS_METRICS_NAMESPACE"]
    assert alarm["Dimensions"] == [{"Name": "service", "Value": env["POWERTOOLS_SERVICE_NAME"]}]
    source = (ROOT / "src" / "handlers" / "summarize.py").read_text()
    assert f'name="{alarm["MetricName"]}"' in source
    assert alarm["Statistic"] == "Sum" and alarm["Threshold"] >= 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"  # no jobs is not an outage
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    jobs = tpl["Resources"]["FailedJobsAlarm"]["Properties"]
    assert jobs["Namespace"] == "AWS/States" and jobs["MetricName"] == "ExecutionsFailed"
    assert jobs["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "ColocationStateMachine"}}]


def test_managed_policy_outside_the_allowlist_fails(transformed):
    bad = copy.deepcopy(transformed)
    bad["Resources"]["ApiFunctionRole"]["Properties"]["ManagedPolicyArns"].append(
        "arn:aws:iam::aws:policy/AmazonS3FullAccess")
    assert privilege_problems(bad) == ["ApiFunctionRole: managed policy arn:aws:iam::aws:policy/AmazonS3FullAccess"]


def test_api_validates_bodies_and_requires_a_key(transformed):
    body = transformed["Resources"]["ColocationApi"]["Properties"]["Body"]
    post = body["paths"]["/colocations"]["post"]
    validator = body["x-amazon-apigateway-request-validators"][post["x-amazon-apigateway-request-validator"]]
    assert validator["validateRequestBody"] is True
    assert post["security"] == [{"api_key": []}]
    assert body["paths"]["/colocations/{job_id}"]["get"]["security"] == [{"api_key": []}]
    bad_body = body["x-amazon-apigateway-gateway-responses"]["BAD_REQUEST_BODY"]
    assert "validationErrorString" in json.dumps(bad_body)


def test_the_stack_refuses_any_region_but_us_west_2():
    rules = sam_template()["Rules"]
    assertions = [a for rule in rules.values() for a in rule["Assertions"]]
    assert {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-west-2"]} in [a["Assert"] for a in assertions]
    assert all("us-west-2" in a["AssertDescription"] for a in assertions)


def test_every_function_logs_to_a_group_that_expires(transformed):
    res = transformed["Resources"]
    retention = {"Ref": "LogRetentionDays"}
    for fn in layer_build.FUNCTIONS:
        group = res[fn]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert res[group]["Type"] == "AWS::Logs::LogGroup", fn
        assert res[group]["Properties"]["RetentionInDays"] == retention, fn
    assert sam_template()["Parameters"]["LogRetentionDays"]["Default"] in (
        sam_template()["Parameters"]["LogRetentionDays"]["AllowedValues"])


def test_outputs_tell_the_caller_which_api_key_to_send(transformed):
    outputs = sam_template()["Outputs"]
    assert outputs["ApiKeyId"]["Value"] == {"Ref": "ColocationApiApiKey"}
    assert transformed["Resources"]["ColocationApiApiKey"]["Type"] == "AWS::ApiGateway::ApiKey"
    assert "x-api-key" in outputs["ApiKeyId"]["Description"]
