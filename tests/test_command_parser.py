"""The grader's command-line model: corpus round trip, tricky cases, and fuzzing.

The corpus (tests/data/command_corpus.tsv) holds real-world command lines
written from kubectl's documentation and everyday troubleshooting, each with
the tool, verb, resource, name, namespace and mutation flag a human reads in
it; every row must parse to exactly that.
"""
from __future__ import annotations

import csv
import dataclasses
import shlex
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_drill.grader.parse import (ParsedCommand, canonical_resource, parse_argv, parse_command,
                                      parse_commands)

CORPUS = Path(__file__).parent / "data" / "command_corpus.tsv"


def _corpus() -> list[dict[str, str]]:
    with CORPUS.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


ROWS = _corpus()


def test_corpus_is_large_and_covers_every_tool() -> None:
    assert len(ROWS) >= 300
    tools = {row["tool"] for row in ROWS}
    assert {"kubectl", "curl", "nvidia-smi", "mlops-drill"} <= tools
    assert len({row["line"] for row in ROWS}) == len(ROWS), "duplicate corpus lines"


@pytest.mark.parametrize("row", ROWS, ids=[r["line"][:60] for r in ROWS])
def test_corpus_row(row: dict[str, str]) -> None:
    cmd = parse_command(row["line"])
    got = {"tool": cmd.tool, "verb": cmd.verb or "", "resource": cmd.resource or "",
           "name": cmd.name or "", "namespace": cmd.namespace or "",
           "is_mutation": str(cmd.is_mutation).lower()}
    want = {k: row[k] for k in got}
    assert got == want
    assert cmd.error is None
    assert cmd.raw == row["line"]


# --- kubectl -----------------------------------------------------------------

def test_global_flags_before_the_verb_and_subcommand() -> None:
    cmd = parse_command("kubectl --context drill -n serving rollout -v 6 undo deploy/fraud-model")
    assert (cmd.verb, cmd.subverb, cmd.resource, cmd.name) == ("rollout", "undo", "deployments",
                                                              "fraud-model")
    assert cmd.namespace == "serving"
    assert cmd.flags["context"] == "drill" and cmd.flags["v"] == "6"
    assert cmd.is_mutation


def test_dash_f_is_follow_for_logs_but_filename_for_apply() -> None:
    logs = parse_command("kubectl logs -f fraud-model-abc -n serving")
    assert logs.flags["follow"] is True and logs.name == "fraud-model-abc"
    apply = parse_command("kubectl apply -f fraud-model.yaml -n serving")
    assert apply.flags["filename"] == "fraud-model.yaml" and apply.name is None


def test_dash_p_is_previous_for_logs_but_patch_for_patch() -> None:
    logs = parse_command("kubectl logs -p fraud-model-abc")
    assert logs.flags["previous"] is True and logs.name == "fraud-model-abc"
    patch = parse_command("kubectl patch deploy fraud-model -p '{\"spec\":{}}'")
    assert patch.flags["patch"] == '{"spec":{}}' and patch.name == "fraud-model"


def test_logs_full_form() -> None:
    cmd = parse_command("kubectl logs -f deploy/x -c c --previous --tail 50")
    assert (cmd.resource, cmd.name, cmd.container) == ("deployments", "x", "c")
    assert cmd.flags == {"follow": True, "container": "c", "previous": True, "tail": "50"}


def test_logs_second_positional_is_the_container() -> None:
    cmd = parse_command("kubectl logs fraud-model-abc model -n serving")
    assert cmd.container == "model" and cmd.name == "fraud-model-abc"


def test_exec_command_after_double_dash_keeps_its_own_flags() -> None:
    cmd = parse_command("kubectl exec -it fraud-model-abc -n serving -- nvidia-smi -L")
    assert cmd.exec_command == ("nvidia-smi", "-L")
    assert cmd.flags == {"stdin": True, "tty": True, "namespace": "serving"}
    assert "L" not in cmd.flags


def test_exec_old_form_without_double_dash() -> None:
    cmd = parse_command("kubectl exec fraud-model-abc -c model ls -la /models")
    assert cmd.name == "fraud-model-abc" and cmd.container == "model"
    assert cmd.exec_command == ("ls", "-la", "/models")


def test_exec_legacy_pod_flag() -> None:
    cmd = parse_command("kubectl exec -p fraud-model-abc -n serving ls /models")
    assert (cmd.resource, cmd.name, cmd.exec_command) == ("pods", "fraud-model-abc", ("ls", "/models"))


def test_type_slash_name_and_type_name_forms_agree() -> None:
    a = parse_command("kubectl get deploy/fraud-model -n serving")
    b = parse_command("kubectl get deployments.apps fraud-model --namespace=serving")
    c = parse_command("k -n serving get deploy.apps/fraud-model")
    assert {(x.resource, x.name, x.namespace) for x in (a, b, c)} == {
        ("deployments", "fraud-model", "serving")}


def test_several_types_and_names() -> None:
    cmd = parse_command("kubectl get po,svc,deploy -n serving")
    assert cmd.resource == "pods" and cmd.resources == ("pods", "services", "deployments")
    mixed = parse_command("kubectl delete deploy/a svc/b")
    assert mixed.resources == ("deployments", "services") and mixed.names == ("a", "b")
    many = parse_command("kubectl get pods a b c")
    assert many.names == ("a", "b", "c") and many.name == "a"


@pytest.mark.parametrize("alias,plural", [
    ("po", "pods"), ("pod", "pods"), ("deploy", "deployments"), ("no", "nodes"), ("ev", "events"),
    ("svc", "services"), ("cm", "configmaps"), ("ns", "namespaces"), ("rs", "replicasets"),
    ("ds", "daemonsets"), ("sts", "statefulsets"), ("ing", "ingresses"),
    ("pvc", "persistentvolumeclaims"), ("pv", "persistentvolumes"), ("sa", "serviceaccounts"),
    ("hpa", "horizontalpodautoscalers"), ("cj", "cronjobs"), ("job", "jobs"), ("ep", "endpoints"),
    ("crd", "customresourcedefinitions"), ("netpol", "networkpolicies"),
    ("pdb", "poddisruptionbudgets"), ("pc", "priorityclasses"), ("sc", "storageclasses"),
    ("limits", "limitranges"), ("quota", "resourcequotas"), ("csr", "certificatesigningrequests"),
    ("rc", "replicationcontrollers"), ("cs", "componentstatuses"), ("Deployment", "deployments"),
    ("deployments.apps", "deployments"), ("deployment.v1.apps", "deployments"),
    ("cronjobs.batch", "cronjobs"), ("hpa.autoscaling", "horizontalpodautoscalers"),
    ("events.events.k8s.io", "events"), ("foos.example.com", "foos"),
])
def test_resource_aliases(alias: str, plural: str) -> None:
    assert canonical_resource(alias) == plural
    assert parse_command(f"kubectl get {alias}").resource == plural


def test_dry_run_local_and_list_are_not_mutations() -> None:
    assert not parse_command("kubectl apply --dry-run=server -f x.yaml").is_mutation
    assert not parse_command("kubectl delete pod x --dry-run").is_mutation
    # pflag: `--dry-run client` leaves `client` a positional; still a dry run.
    assert not parse_command("kubectl create deployment x --image=y --dry-run client").is_mutation
    assert parse_command("kubectl apply --dry-run=none -f x.yaml").is_mutation
    assert not parse_command("kubectl set resources deploy/x --local -o yaml").is_mutation
    assert not parse_command("kubectl label pod x --list").is_mutation


@pytest.mark.parametrize("line", [
    "kubectl apply -f x.yaml", "kubectl create ns x", "kubectl delete pod x", "kubectl patch deploy x -p {}",
    "kubectl edit deploy x", "kubectl set image deploy/x c=i", "kubectl scale deploy x --replicas=1",
    "kubectl label pod x a=b", "kubectl annotate pod x a=b", "kubectl replace -f x.yaml",
    "kubectl rollout undo deploy/x", "kubectl rollout restart deploy/x", "kubectl rollout pause deploy/x",
    "kubectl rollout resume deploy/x", "kubectl cordon n", "kubectl uncordon n", "kubectl drain n",
    "kubectl taint nodes n k=v:NoSchedule", "kubectl autoscale deploy x --max=3",
])
def test_mutating_commands(line: str) -> None:
    assert parse_command(line).is_mutation


@pytest.mark.parametrize("line", [
    "kubectl get po", "kubectl describe deploy x", "kubectl logs x", "kubectl exec x -- ls",
    "kubectl rollout status deploy/x", "kubectl rollout history deploy/x", "kubectl top pod",
    "kubectl port-forward svc/x 8080:80", "kubectl auth can-i delete pods", "kubectl diff -f x.yaml",
    "kubectl explain pods", "kubectl events", "kubectl api-resources", "kubectl config use-context x",
])
def test_read_only_commands(line: str) -> None:
    assert not parse_command(line).is_mutation


def test_port_forward_ports_and_target() -> None:
    cmd = parse_command("kubectl port-forward svc/fraud-model 8080:80 -n serving")
    assert (cmd.resource, cmd.name, cmd.args) == ("services", "fraud-model", ("8080:80",))


def test_rollout_undo_to_revision() -> None:
    cmd = parse_command("kubectl rollout undo deploy/fraud-model --to-revision=2")
    assert cmd.subverb == "undo" and cmd.flags["to-revision"] == "2"


def test_top_auth_explain_events_cp_config() -> None:
    assert parse_command("kubectl top pod").resource == "pods"
    can_i = parse_command("kubectl auth can-i create deployments -n serving")
    assert (can_i.subverb, can_i.resource, can_i.args) == ("can-i", "deployments", ("create",))
    assert parse_command("kubectl explain deploy.spec.strategy").resource == "deployments"
    ev = parse_command("kubectl events --for pod/x -n serving")
    assert ev.resource == "events" and ev.flags["for"] == "pod/x"
    cp = parse_command("kubectl cp serving/fraud-model-abc:/tmp/a ./a")
    assert (cp.resource, cp.name, cp.namespace) == ("pods", "fraud-model-abc", "serving")
    cfg = parse_command("kubectl config use-context kind-drill")
    assert (cfg.subverb, cfg.name) == ("use-context", "kind-drill")


def test_label_and_taint_specs_are_not_names() -> None:
    cmd = parse_command("kubectl label nodes gpu-node-0 gpu-node-1 nvidia.com/gpu.present- team=ml")
    assert cmd.names == ("gpu-node-0", "gpu-node-1")
    assert cmd.args == ("nvidia.com/gpu.present-", "team=ml")
    taint = parse_command("kubectl taint nodes gpu-node-1 nvidia.com/gpu:NoSchedule-")
    assert taint.names == ("gpu-node-1",)


def test_output_selector_sort_field_selector() -> None:
    cmd = parse_command("kubectl get events -owide -l app=x --field-selector type=Warning "
                        "--sort-by=.lastTimestamp -A")
    assert (cmd.output, cmd.selector, cmd.field_selector, cmd.sort_by) == (
        "wide", "app=x", "type=Warning", ".lastTimestamp")
    assert cmd.all_namespaces


def test_watch_is_a_boolean_and_never_eats_the_name() -> None:
    cmd = parse_command("kubectl get -w pods fraud-model-abc")
    assert cmd.flags["watch"] is True and cmd.name == "fraud-model-abc"


def test_unknown_flags_do_not_swallow_names() -> None:
    cmd = parse_command("kubectl get --made-up pods x")
    assert (cmd.resource, cmd.name) == ("pods", "x")


def test_plugin_verb() -> None:
    cmd = parse_command("kubectl node-shell gpu-node-0")
    assert cmd.verb == "node-shell" and cmd.args == ("gpu-node-0",)


# --- curl --------------------------------------------------------------------

def test_curl_combined_short_flags_and_attached_method() -> None:
    cmd = parse_command("curl -sSL -XPOST localhost:8080/predict -d '{}'")
    assert cmd.http_method == "POST" and cmd.flags["location"] is True
    assert (cmd.url_host, cmd.port, cmd.url_path) == ("localhost", 8080, "/predict")


def test_curl_json_implies_post_and_content_type() -> None:
    cmd = parse_command("curl --json '{\"a\": 1}' http://localhost:8080/predict")
    assert cmd.http_method == "POST" and cmd.payload == '{"a": 1}'
    assert "Content-Type: application/json" in cmd.headers


@pytest.mark.parametrize("line,method", [
    ("curl localhost:8080/healthz", "GET"), ("curl -I localhost/", "HEAD"),
    ("curl --head localhost/", "HEAD"), ("curl -d a=1 localhost/", "POST"),
    ("curl --data-binary @f localhost/", "POST"), ("curl -F f=@x localhost/", "POST"),
    ("curl -T f localhost/", "PUT"), ("curl -G -d q=1 localhost/search", "GET"),
    ("curl -X delete localhost/x", "DELETE"), ("curl --request PATCH -d {} localhost/x", "PATCH"),
    ("curl -I -X GET localhost/", "GET"),
])
def test_curl_method(line: str, method: str) -> None:
    assert parse_command(line).http_method == method


def test_curl_url_forms() -> None:
    assert parse_command("curl --url https://h/p?q=1").url_path == "/p"
    assert parse_command("curl https://h/p").port == 443
    ipv6 = parse_command("curl 'http://[::1]:9000/x'")
    assert (ipv6.url_host, ipv6.port) == ("::1", 9000)
    bad = parse_command("curl http://host:notaport/x")
    assert bad.port is None and bad.error is None


def test_curl_value_flags_do_not_become_urls() -> None:
    cmd = parse_command("curl -s -o /dev/null -w '%{http_code}' -m 5 -H 'X-A: b' localhost:8080/readyz")
    assert cmd.url == "localhost:8080/readyz"
    assert cmd.headers == ("X-A: b",)
    assert cmd.flags["write-out"] == "%{http_code}" and cmd.flags["max-time"] == "5"


def test_http_mutation_is_about_the_endpoint() -> None:
    assert not parse_command("curl -X POST localhost:8080/predict -d {}").http_mutation
    assert not parse_command("curl -d {} localhost:8080/v1/models/fraud:predict").http_mutation
    assert not parse_command("curl -d {} localhost:8080/v2/models/fraud/infer").http_mutation
    registry = parse_command("curl -X POST localhost:5000/api/2.0/mlflow/model-versions/"
                             "transition-stage -d {}")
    assert registry.http_mutation and not registry.is_mutation
    assert not parse_command("curl localhost:5000/api/2.0/mlflow/registered-models/get").http_mutation


# --- nvidia-smi and mlops-drill ---------------------------------------------

def test_nvidia_smi_flags_subcommands_and_state_changes() -> None:
    q = parse_command("nvidia-smi --query-gpu=index,memory.used --format=csv,noheader -i 0")
    assert q.verb is None and q.flags == {"query-gpu": "index,memory.used",
                                          "format": "csv,noheader", "id": "0"}
    assert parse_command("nvidia-smi -q -d MEMORY").flags == {"query": True, "display": "MEMORY"}
    assert parse_command("nvidia-smi topo -m").verb == "topo"
    assert parse_command("nvidia-smi mig -lgi").verb == "mig"
    assert parse_command("nvidia-smi -r -i 0").is_mutation
    assert not parse_command("nvidia-smi -L").is_mutation


def test_mlops_drill_payload() -> None:
    cmd = parse_command('mlops-drill diagnose "stale features: refresh cronjob suspended"')
    assert (cmd.verb, cmd.payload) == ("diagnose", "stale features: refresh cronjob suspended")
    assert parse_command("mlops-drill hypothesize bad release").payload == "bad release"
    assert parse_command("mlops-drill hint").payload is None


# --- shell structure ---------------------------------------------------------

def test_split_on_separators_and_newlines() -> None:
    cmds = parse_commands("kubectl get po; kubectl get svc && curl localhost:1/x || echo no\n"
                          "nvidia-smi -L & mlops-drill status")
    assert [(c.tool, c.verb) for c in cmds] == [
        ("kubectl", "get"), ("kubectl", "get"), ("curl", "GET"), ("echo", None),
        ("nvidia-smi", None), ("mlops-drill", "status")]
    assert [c.raw for c in cmds[:3]] == ["kubectl get po", "kubectl get svc", "curl localhost:1/x"]


def test_pipeline_keeps_the_main_command() -> None:
    cmd = parse_command("kubectl get pods -A -o json | jq '.items[]' | grep -c Running")
    assert (cmd.tool, cmd.verb, cmd.pipeline) == ("kubectl", "get", ("jq", "grep"))
    fed = parse_command("echo '{}' | curl -d @- localhost:8080/predict")
    assert fed.tool == "curl" and fed.pipeline == ("echo",)


def test_quoted_operators_do_not_split() -> None:
    cmds = parse_commands("kubectl exec x -- sh -c 'ps aux | grep python; echo done'")
    assert len(cmds) == 1 and cmds[0].exec_command == ("sh", "-c", "ps aux | grep python; echo done")


def test_redirections_are_not_arguments() -> None:
    cmd = parse_command("kubectl logs x -n serving 2>&1 > /tmp/x.log")
    assert cmd.args == () and cmd.name == "x" and cmd.namespace == "serving"


def test_line_continuations() -> None:
    cmds = parse_commands("kubectl get pods \\\n  -n serving \\\n  -o wide\nkubectl get svc")
    assert len(cmds) == 2
    assert (cmds[0].namespace, cmds[0].output) == ("serving", "wide")


def test_heredoc_becomes_the_payload() -> None:
    text = "kubectl apply -f - <<'EOF'\napiVersion: v1\nkind: ConfigMap\nEOF\nkubectl get cm"
    cmds = parse_commands(text)
    assert [c.verb for c in cmds] == ["apply", "get"]
    assert cmds[0].payload == "apiVersion: v1\nkind: ConfigMap\n" and cmds[0].is_mutation
    cat = parse_commands("cat <<EOF | kubectl apply -f -\nkind: Pod\nEOF")
    assert len(cat) == 1 and cat[0].payload == "kind: Pod\n" and cat[0].pipeline == ("cat",)


def test_command_substitutions_run_first_and_stay_one_word() -> None:
    text = "kubectl logs $(kubectl get po -l app=fraud-model -o name | head -1) -n serving"
    inner, outer = parse_commands(text)
    assert (inner.verb, inner.selector, inner.pipeline) == ("get", "app=fraud-model", ("head",))
    assert outer.verb == "logs" and outer.namespace == "serving"
    assert outer.name == "$(kubectl get po -l app=fraud-model -o name | head -1)"
    assert parse_command(text).verb == "logs"


def test_loops_and_keywords() -> None:
    cmds = parse_commands("for p in $(kubectl get po -o name); do kubectl describe $p; done")
    assert [(c.verb, c.resource) for c in cmds] == [("get", "pods"), ("describe", "$p")]
    cond = parse_commands("if kubectl get ns scratch; then kubectl delete ns scratch; fi")
    assert [c.verb for c in cond] == ["get", "delete"]


def test_prompts_and_comments() -> None:
    assert parse_command("$ kubectl get po").verb == "get"
    assert parse_command("# kubectl get po").verb == "get"
    assert parse_command("user@host:~/src$ kubectl get po").verb == "get"
    assert parse_commands("# check the pods first") == []
    assert parse_commands("kubectl get po # trailing note")[0].args == ()
    assert parse_command("kubectl get po -o jsonpath='{.items[#]}'").output == "jsonpath={.items[#]}"


def test_wrappers() -> None:
    for line in ("sudo -E kubectl get po -n serving", "time kubectl get po -n serving",
                 "watch -n 2 kubectl get po -n serving", "watch 'kubectl get po -n serving'",
                 "timeout 5s kubectl get po -n serving", "env -u X kubectl get po -n serving",
                 "bash -euo pipefail -c 'kubectl get po -n serving'", "nohup kubectl get po -n serving",
                 "minikube kubectl -- get po -n serving", "k get po -n serving"):
        cmd = parse_command(line)
        assert (cmd.tool, cmd.verb, cmd.resource, cmd.namespace) == (
            "kubectl", "get", "pods", "serving"), line
        assert cmd.raw == line


def test_shell_without_dash_c_is_the_program() -> None:
    assert parse_command("bash --norc script.sh").tool == "bash"
    assert parse_command("bash --norc -c 'kubectl get po'").tool == "kubectl"


def test_crlf_histories() -> None:
    cmds = parse_commands("kubectl apply -f - <<EOF\r\nkind: Pod\r\nEOF\r\nkubectl get po -n serving\r\n")
    assert [(c.verb, c.payload) for c in cmds] == [("apply", "kind: Pod\n"), ("get", None)]
    assert cmds[1].namespace == "serving"


def test_env_prefix() -> None:
    cmd = parse_command("KUBECONFIG=/tmp/kc FOO=bar kubectl get po")
    assert cmd.env_prefix == {"KUBECONFIG": "/tmp/kc", "FOO": "bar"}
    assert parse_command("FOO=bar").tool == ""


def test_parse_command_prefers_the_known_tool() -> None:
    cmd = parse_command("cd /tmp && kubectl get po")
    assert cmd.tool == "kubectl" and cmd.raw == "cd /tmp && kubectl get po"


def test_empty_and_blank_input() -> None:
    assert parse_command("").tool == "" and parse_command("   ").tool == ""
    assert parse_commands("") == [] and parse_commands("\n\n;;") == []


@pytest.mark.parametrize("line", [
    "kubectl get po -o jsonpath='{.items", 'curl -d "{ localhost/x', "kubectl logs $(kubectl get po",
    "kubectl get po \\",
])
def test_untokenisable_lines_set_error_but_keep_what_is_known(line: str) -> None:
    cmd = parse_command(line)
    assert cmd.error is not None
    assert cmd.tool in ("kubectl", "curl")


def test_absurd_nesting_is_an_error_not_a_crash() -> None:
    assert "nested" in (parse_command('"$(' * 2000).error or "")
    assert "nested" in (parse_command("watch " * 3000 + "kubectl get po").error or "")


def test_error_anywhere_in_the_line_marks_the_command() -> None:
    assert parse_command("kubectl get po; echo 'oops").error is not None


def test_parse_argv_matches_the_text_form() -> None:
    argv = ["kubectl", "exec", "-it", "x", "--", "sh", "-c", "a | b; c"]
    a = parse_argv(argv)
    b = parse_command(shlex.join(argv))
    assert a == b
    assert a.exec_command == ("sh", "-c", "a | b; c")


def test_result_is_frozen_and_hashable() -> None:
    cmd = parse_command("KUBECONFIG=x kubectl get po -n serving")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cmd.verb = "delete"  # type: ignore[misc]
    assert hash(cmd) == hash(parse_command("KUBECONFIG=x kubectl get po -n serving"))
    with pytest.raises(TypeError):
        cmd.flags["namespace"] = "x"  # type: ignore[index]


# --- fuzzing -----------------------------------------------------------------

REAL_TOKENS = [
    "kubectl", "k", "curl", "nvidia-smi", "mlops-drill", "sudo", "watch", "time", "env", "timeout",
    "bash", "-c", "get", "describe", "logs", "exec", "rollout", "undo", "status", "set", "image",
    "config", "use-context", "top", "pod", "auth", "can-i", "cp", "port-forward", "create", "secret",
    "generic", "po", "deploy/fraud-model", "svc", "pods,svc", "-n", "serving", "--namespace",
    "--namespace=serving", "-A", "-o", "-owide", "yaml", "jsonpath={.items[*]}", "-l", "app=x",
    "--sort-by=.lastTimestamp", "--field-selector", "-f", "-w", "-it", "-c", "--", "--dry-run",
    "--dry-run=client", "-p", "--tail", "50", "-X", "-XPOST", "-sSL", "-d", "--json", "-H", "-G", "-I",
    "-T", "--url", "localhost:8080/predict", "http://[::1]:80/x", "http://h:bad/x", "-L", "-q",
    "--query-gpu=index", "--format=csv", "mig", "-cgi", "-i", "0", "diagnose", "x=y", "FOO=bar",
    "|", "||", "&&", ";", "&", ">", "2>&1", "<<EOF", "<<<", "$(", ")", "`", "'", '"', "\\", "#", "$ ",
    "\n", "{", "}", "do", "done", "for", "in", "-", "=", ":", "/", "@-", "-e", "--x=", "-n=", "<(",
]


def _check(commands: list[ParsedCommand]) -> None:
    for cmd in commands:
        assert isinstance(cmd, ParsedCommand)
        assert isinstance(cmd.tool, str)
        assert cmd.resource is None or isinstance(cmd.resource, str)
        assert all(isinstance(n, str) for n in cmd.names)
        assert cmd.port is None or isinstance(cmd.port, int)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_raises(text: str) -> None:
    assert isinstance(parse_command(text), ParsedCommand)
    _check(parse_commands(text))


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(REAL_TOKENS) | st.text(max_size=6), max_size=25))
def test_token_soups_never_raise(tokens: list[str]) -> None:
    line = " ".join(tokens)
    cmd = parse_command(line)
    assert isinstance(cmd, ParsedCommand) and cmd.raw == line
    _check(parse_commands(line))
    assert isinstance(parse_argv(tokens), ParsedCommand)


SAFE_TOKENS = [t for t in REAL_TOKENS if not set(t) & set("'\"\\#`$<>|&;(){}\n")]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SAFE_TOKENS), min_size=1, max_size=15),
       st.lists(st.sampled_from(SAFE_TOKENS), max_size=5))
def test_unclosed_quote_sets_error(before: list[str], after: list[str]) -> None:
    line = " ".join(before) + " '" + " ".join(after)
    assert parse_command(line).error is not None


WORDS = st.lists(st.sampled_from(REAL_TOKENS) | st.text(
    alphabet=st.characters(blacklist_characters="\x00\x01"), max_size=8), max_size=20)


@settings(max_examples=400, deadline=None)
@given(WORDS)
def test_argv_and_its_quoted_text_parse_alike(argv: list[str]) -> None:
    """A recording shim's argv and the same command typed (quoted) mean one thing."""
    from_argv = parse_argv(argv)
    from_text = parse_command(shlex.join(argv))
    assert dataclasses.replace(from_argv, raw="") == dataclasses.replace(from_text, raw="")
